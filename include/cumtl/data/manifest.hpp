#pragma once
// The generic input format, a CSV manifest with a header:
//
//   path,domain,emotion,compound,AU1,AU2,AU4,...
//   images/000000.png,emotionet,,,1,0,-1,...
//   /data/raf/test_0001_aligned.jpg,rafdb,happiness,,,,,...
//
// `path` is relative to the manifest's folder, or absolute. `emotion` is a name
// from emotion_names and `compound` one from compound_names, empty when
// missing. Each AU column is named AU<n> for an n of au_numbers, any subset in
// any order, holding 1 (present), 0 (absent), or -1 or nothing (missing).
// `domain` may be left out or empty: the dataset's name stands in. Fields may
// be quoted ("a,b", with "" for a quote) but may not span lines, so errors can
// name the line.
//
// Also here: the text helpers (reading a file's lines, splitting CSV fields)
// that the real datasets' readers in formats.hpp share.

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cumtl/core/error.hpp"
#include "cumtl/data/dataset.hpp"
#include "cumtl/data/image_io.hpp"
#include "cumtl/data/sample.hpp"

namespace cumtl::data {

namespace detail {

// "'file':line", the prefix of every error about a line of a text file.
inline std::string at_line(const std::filesystem::path& file, std::size_t line) {
  return quoted(file) + ":" + std::to_string(line);
}

inline std::string_view trim(std::string_view text) {
  const auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!text.empty() && blank(text.front())) text.remove_prefix(1);
  while (!text.empty() && blank(text.back())) text.remove_suffix(1);
  return text;
}

inline std::string lower(std::string_view text) {
  std::string result(text);
  for (char& c : result) c = char(std::tolower(static_cast<unsigned char>(c)));
  return result;
}

// The integer that is all of `text`, or nothing.
inline std::optional<long long> parse_integer(std::string_view text) {
  long long value = 0;
  if (!text.empty() && text.front() == '+') text.remove_prefix(1);
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// The number that is all of `text`, or nothing (for AffectNet's face boxes, written as "134" or "134.0").
inline std::optional<double> parse_number(std::string_view text) {
  double value = 0;
  if (!text.empty() && text.front() == '+') text.remove_prefix(1);
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// Calls visit(line_number, line) for each line of a text file that is not
// blank, numbered from 1, without its line ending or a leading UTF-8 BOM.
inline void for_each_line(const std::filesystem::path& file, std::string_view what,
                          const std::function<void(std::size_t, std::string_view)>& visit) {
  const std::vector<std::uint8_t> bytes = read_file(file, what);
  std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
  std::size_t number = 0;
  while (!text.empty()) {
    const std::size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    ++number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!trim(line).empty()) visit(number, line);
  }
}

// The fields of one CSV line. Unquoted fields are trimmed of spaces; a quoted
// field is taken as written, with "" standing for one quote.
inline std::vector<std::string> split_fields(std::string_view line, char delimiter, const std::string& where) {
  std::vector<std::string> fields;
  std::size_t at = 0;
  while (true) {
    while (at < line.size() && line[at] == ' ' && delimiter != ' ') ++at;
    std::string field;
    if (at < line.size() && line[at] == '"') {
      ++at;
      while (true) {
        CUMTL_REQUIRE(at < line.size(), where, ": unterminated quote in field ", fields.size() + 1,
                      " (a field may not span lines)");
        if (line[at] == '"') {
          if (at + 1 < line.size() && line[at + 1] == '"') {
            field += '"';
            at += 2;
            continue;
          }
          ++at;
          break;
        }
        field += line[at++];
      }
      while (at < line.size() && line[at] == ' ' && delimiter != ' ') ++at;
      CUMTL_REQUIRE(at == line.size() || line[at] == delimiter, where, ": characters after the closing quote of field ",
                    fields.size() + 1);
    } else {
      const std::size_t end = std::min(line.find(delimiter, at), line.size());
      field = std::string(trim(line.substr(at, end - at)));
      at = end;
    }
    fields.push_back(std::move(field));
    if (at >= line.size()) return fields;
    ++at;  // the delimiter
  }
}

// A field as it must be written so that split_fields reads it back unchanged.
inline std::string csv_field(std::string_view value, const std::string& what) {
  CUMTL_REQUIRE(value.find_first_of("\r\n") == std::string_view::npos, what, ": the value '", value,
                "' holds a line break, which a manifest cannot hold");
  const bool quote = value.find_first_of(",\"") != std::string_view::npos ||
                     (!value.empty() &&
                      (value.front() == ' ' || value.back() == ' ' || value.front() == '\t' || value.back() == '\t'));
  if (!quote) return std::string(value);
  std::string result = "\"";
  for (char c : value) result += c == '"' ? std::string("\"\"") : std::string(1, c);
  return result + "\"";
}

template <std::size_t N>
std::string joined(const std::array<std::string_view, N>& names) {
  std::string text;
  for (std::string_view name : names) text += (text.empty() ? "" : ", ") + std::string(name);
  return text;
}

inline std::string known_aus() {
  std::string text;
  for (int number : au_numbers) text += (text.empty() ? "" : ", ") + std::to_string(number);
  return text;
}

// A path from a list, relative to the list's folder unless absolute.
inline std::filesystem::path resolve(const std::filesystem::path& folder, std::string_view path) {
  const std::filesystem::path given(path);
  return given.is_absolute() ? given : (folder / given).lexically_normal();
}

}  // namespace detail

// One row of a manifest: the image's path as it is written (relative to the manifest's folder, or absolute).
struct ManifestRow {
  std::string path;
  std::string domain;
  Labels labels;
};

class ManifestDataset final : public Dataset {
 public:
  // Reads and checks the whole manifest; `name` defaults to the manifest's stem.
  explicit ManifestDataset(const std::filesystem::path& manifest, std::string name = {}, ImageLimits limits = {})
      : manifest_(manifest), name_(name.empty() ? manifest.stem().string() : std::move(name)), limits_(limits) {
    const std::filesystem::path folder = manifest.parent_path();
    std::vector<Column> columns;
    detail::for_each_line(manifest, "manifest", [&](std::size_t number, std::string_view line) {
      const std::string where = detail::at_line(manifest, number);
      std::vector<std::string> fields = detail::split_fields(line, ',', where);
      if (columns.empty()) {
        columns = parse_header(fields, where);
        return;
      }
      CUMTL_REQUIRE(fields.size() >= columns.size(), where, ": too few fields (", fields.size(), "; the header has ",
                    columns.size(), ")");
      CUMTL_REQUIRE(fields.size() <= columns.size(), where, ": too many fields (", fields.size(), "; the header has ",
                    columns.size(), ")");
      entries_.push_back(parse_row(columns, fields, folder, where));
    });
    CUMTL_REQUIRE(!columns.empty(), "manifest ", detail::quoted(manifest), " is empty: it has no header");
    CUMTL_REQUIRE(!entries_.empty(), "manifest ", detail::quoted(manifest), " has a header and no rows");
  }

  std::string name() const override { return name_; }
  std::size_t size() const override { return entries_.size(); }

  Sample load(std::size_t index) const override {
    const Entry& entry = at(index);
    return Sample{entry.file.string(), entry.domain, decode_image(entry.file, limits_), entry.labels};
  }

  Labels labels(std::size_t index) const override { return at(index).labels; }

  // The image file of sample `index`, resolved against the manifest's folder.
  const std::filesystem::path& file(std::size_t index) const { return at(index).file; }
  const std::string& domain(std::size_t index) const { return at(index).domain; }

 private:
  enum class Field : std::uint8_t { path, domain, emotion, compound, au };
  struct Column {
    Field field;
    int au = -1;  // index into au_numbers for an AU column
  };
  struct Entry {
    std::filesystem::path file;
    std::string domain;
    Labels labels;
  };

  static std::vector<Column> parse_header(const std::vector<std::string>& names, const std::string& where) {
    std::vector<Column> columns;
    std::vector<std::string> seen;
    for (const std::string& raw : names) {
      const std::string name = detail::lower(raw);
      CUMTL_REQUIRE(std::find(seen.begin(), seen.end(), name) == seen.end(), where, ": column '", raw,
                    "' appears twice in the header");
      seen.push_back(name);
      if (name == "path") {
        columns.push_back({Field::path});
      } else if (name == "domain") {
        columns.push_back({Field::domain});
      } else if (name == "emotion") {
        columns.push_back({Field::emotion});
      } else if (name == "compound") {
        columns.push_back({Field::compound});
      } else if (name.starts_with("au") && detail::parse_integer(std::string_view(name).substr(2))) {
        const auto index = au_index(int(*detail::parse_integer(std::string_view(name).substr(2))));
        CUMTL_REQUIRE(index.has_value(), where, ": unknown AU column '", raw, "' (cumtl knows AUs ",
                      detail::known_aus(), ")");
        columns.push_back({Field::au, *index});
      } else {
        CUMTL_FAIL(where, ": unknown column '", raw, "' (a manifest has path, domain, emotion, compound and AU<n>)");
      }
    }
    CUMTL_REQUIRE(std::find(seen.begin(), seen.end(), "path") != seen.end(), where,
                  ": the header has no 'path' column (is the header line missing?)");
    return columns;
  }

  Entry parse_row(const std::vector<Column>& columns, const std::vector<std::string>& fields,
                  const std::filesystem::path& folder, const std::string& where) const {
    Entry entry;
    entry.domain = name_;
    for (std::size_t i = 0; i < columns.size(); ++i) {
      const std::string& value = fields[i];
      switch (columns[i].field) {
        case Field::path:
          CUMTL_REQUIRE(!value.empty(), where, ": the path is empty");
          entry.file = detail::resolve(folder, value);
          break;
        case Field::domain:
          if (!value.empty()) entry.domain = value;
          break;
        case Field::emotion:
          if (value.empty()) break;
          if (const auto index = index_of(emotion_names, detail::lower(value))) {
            entry.labels.emotion = *index;
          } else {
            CUMTL_FAIL(where, ": unknown emotion '", value, "' (expected one of ", detail::joined(emotion_names),
                       ", or nothing)");
          }
          break;
        case Field::compound:
          if (value.empty()) break;
          if (const auto index = index_of(compound_names, detail::lower(value))) {
            entry.labels.compound = *index;
          } else {
            CUMTL_FAIL(where, ": unknown compound expression '", value, "' (expected one of ",
                       detail::joined(compound_names), ", or nothing)");
          }
          break;
        case Field::au: {
          const auto number = value.empty() ? std::optional<long long>(-1) : detail::parse_integer(value);
          CUMTL_REQUIRE(number && *number >= -1 && *number <= 1, where, ": AU", au_numbers[columns[i].au], " is '",
                        value, "', not 1, 0, -1 or empty");
          entry.labels.aus[columns[i].au] = std::int8_t(*number);
          break;
        }
      }
    }
    return entry;
  }

  const Entry& at(std::size_t index) const {
    CUMTL_REQUIRE(index < entries_.size(), "manifest ", detail::quoted(manifest_), ": sample ", index,
                  " is out of range (", entries_.size(), " samples)");
    return entries_[index];
  }

  std::filesystem::path manifest_;
  std::string name_;
  ImageLimits limits_;
  std::vector<Entry> entries_;
};

// Writes a manifest with the columns path, domain, emotion, compound and AU<n>
// for each n of `au_columns`, atomically. A row with a known label for an AU
// that has no column is an error rather than a label silently lost.
inline void write_manifest(const std::filesystem::path& manifest, const std::vector<ManifestRow>& rows,
                           std::span<const int> au_columns) {
  const std::string what = "write_manifest " + detail::quoted(manifest);
  std::vector<int> indices;
  std::string text = "path,domain,emotion,compound";
  for (int number : au_columns) {
    const auto index = au_index(number);
    CUMTL_REQUIRE(index.has_value(), what, ": unknown AU ", number, " (cumtl knows AUs ", detail::known_aus(), ")");
    CUMTL_REQUIRE(std::find(indices.begin(), indices.end(), *index) == indices.end(), what, ": AU ", number,
                  " is listed twice");
    indices.push_back(*index);
    text += ",AU" + std::to_string(number);
  }
  text += '\n';
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const ManifestRow& row = rows[r];
    const std::string where = what + ": row " + std::to_string(r);
    const Labels& labels = row.labels;
    CUMTL_REQUIRE(!row.path.empty(), where, ": the path is empty");
    CUMTL_REQUIRE(labels.emotion >= -1 && labels.emotion < int(emotion_names.size()), where, ": emotion ",
                  labels.emotion, " is out of range");
    CUMTL_REQUIRE(labels.compound >= -1 && labels.compound < int(compound_names.size()), where, ": compound ",
                  labels.compound, " is out of range");
    text += detail::csv_field(row.path, where) + ',' + detail::csv_field(row.domain, where) + ',';
    if (labels.emotion >= 0) text += emotion_names[labels.emotion];
    text += ',';
    if (labels.compound >= 0) text += compound_names[labels.compound];
    for (std::size_t a = 0; a < au_numbers.size(); ++a) {
      const int value = labels.aus[a];
      CUMTL_REQUIRE(value >= -1 && value <= 1, where, ": AU", au_numbers[a], " is ", value, ", not 1, 0 or -1");
      CUMTL_REQUIRE(value == -1 || std::find(indices.begin(), indices.end(), int(a)) != indices.end(), where, ": AU",
                    au_numbers[a], " is labelled but has no column");
    }
    for (int index : indices) {
      text += ',';
      if (labels.aus[index] >= 0) text += labels.aus[index] == 1 ? '1' : '0';
    }
    text += '\n';
  }
  detail::write_file_atomically(manifest, std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

}  // namespace cumtl::data
