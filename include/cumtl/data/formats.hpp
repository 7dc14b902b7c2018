#pragma once
// Readers for the real datasets' own layouts: RAF-DB (basic and compound),
// EmotioNet AU tables, FER2013 and AffectNet. None of these datasets could be
// read while this was written: the readers follow their documented layouts
// (shared/FACTS.md) and are tested on small fixtures. Every fact about a
// dataset that may be wrong — a label code, a file name, a column name — is in
// the tables of the first section, so a user holding the real files corrects
// a table, not a parser.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cumtl/core/error.hpp"
#include "cumtl/data/dataset.hpp"
#include "cumtl/data/image_io.hpp"
#include "cumtl/data/manifest.hpp"
#include "cumtl/data/sample.hpp"

namespace cumtl::data {

enum class DataSplit : std::uint8_t { train, validation, test, all };

inline std::string_view split_name(DataSplit split) {
  switch (split) {
    case DataSplit::train: return "train";
    case DataSplit::validation: return "validation";
    case DataSplit::test: return "test";
    case DataSplit::all: return "all";
  }
  return "?";
}

namespace detail {

inline constexpr int no_label = -1;
inline constexpr int bad_name = -100;  // a misspelt name in a table below; the static_asserts catch it

constexpr int emotion(std::string_view name) {
  for (std::size_t i = 0; i < emotion_names.size(); ++i)
    if (emotion_names[i] == name) return int(i);
  return bad_name;
}

constexpr int compound(std::string_view name) {
  for (std::size_t i = 0; i < compound_names.size(); ++i)
    if (compound_names[i] == name) return int(i);
  return bad_name;
}

}  // namespace detail

// A dataset's code for a label, what the dataset calls it, and the cumtl index it
// becomes (into emotion_names or compound_names; no_label: the row is skipped).
struct LabelCode {
  long long code;
  std::string_view meaning;
  int label;
};

// A word of a dataset that selects a split.
struct SplitWord {
  std::string_view word;
  DataSplit split;
};

// ─────────────────────────────────────────────────────────────────────────────
// The tables. Entries marked *check* are documented but unconfirmed on real files.
// ─────────────────────────────────────────────────────────────────────────────

// RAF-DB basic, basic/EmoLabel/list_patition_label.txt: `train_00001.jpg 5`.
inline constexpr std::array<LabelCode, 7> rafdb_basic_codes{{
    {1, "Surprise", detail::emotion("surprise")},
    {2, "Fear", detail::emotion("fear")},
    {3, "Disgust", detail::emotion("disgust")},
    {4, "Happiness", detail::emotion("happiness")},
    {5, "Sadness", detail::emotion("sadness")},
    {6, "Anger", detail::emotion("anger")},
    {7, "Neutral", detail::emotion("neutral")},
}};

// RAF-DB compound, compound/EmoLabel/list_patition_label.txt (*check* the order).
inline constexpr std::array<LabelCode, 11> rafdb_compound_codes{{
    {1, "Happily Surprised", detail::compound("happily_surprised")},
    {2, "Happily Disgusted", detail::compound("happily_disgusted")},
    {3, "Sadly Fearful", detail::compound("sadly_fearful")},
    {4, "Sadly Angry", detail::compound("sadly_angry")},
    {5, "Sadly Surprised", detail::compound("sadly_surprised")},
    {6, "Sadly Disgusted", detail::compound("sadly_disgusted")},
    {7, "Fearfully Angry", detail::compound("fearfully_angry")},
    {8, "Fearfully Surprised", detail::compound("fearfully_surprised")},
    {9, "Angrily Surprised", detail::compound("angrily_surprised")},
    {10, "Angrily Disgusted", detail::compound("angrily_disgusted")},
    {11, "Disgustedly Surprised", detail::compound("disgustedly_surprised")},
}};

// RAF-DB's files, relative to the dataset's root; an image name's prefix gives its split.
struct RafdbLayout {
  std::string_view labels, aligned_images, original_images, aligned_suffix;
};
inline constexpr RafdbLayout rafdb_basic_layout{"basic/EmoLabel/list_patition_label.txt", "basic/Image/aligned",
                                                "basic/Image/original", "_aligned"};
inline constexpr RafdbLayout rafdb_compound_layout{"compound/EmoLabel/list_patition_label.txt",
                                                   "compound/Image/aligned", "compound/Image/original", "_aligned"};
inline constexpr std::array<SplitWord, 2> rafdb_split_prefixes{
    {{"train", DataSplit::train}, {"test", DataSplit::test}}};

// EmotioNet AU tables: the value of an AU cell → cumtl's AU label (1 present, 0 absent, −1 missing).
// Column sets differ between releases (*check*): the AU numbers come from the header, as "AU12" or "12".
inline constexpr std::array<LabelCode, 3> emotionet_au_values{{
    {1, "present", 1},
    {0, "absent", 0},
    {999, "unknown", detail::no_label},
}};

// FER2013, fer2013.csv: emotion,pixels,Usage.
inline constexpr std::array<LabelCode, 7> fer2013_codes{{
    {0, "Angry", detail::emotion("anger")},
    {1, "Disgust", detail::emotion("disgust")},
    {2, "Fear", detail::emotion("fear")},
    {3, "Happy", detail::emotion("happiness")},
    {4, "Sad", detail::emotion("sadness")},
    {5, "Surprise", detail::emotion("surprise")},
    {6, "Neutral", detail::emotion("neutral")},
}};
inline constexpr std::array<SplitWord, 3> fer2013_usages{
    {{"Training", DataSplit::train}, {"PublicTest", DataSplit::validation}, {"PrivateTest", DataSplit::test}}};
struct Fer2013Layout {
  std::string_view emotion_column, pixels_column, usage_column;
  int side;  // images are side × side grey values
};
inline constexpr Fer2013Layout fer2013_layout{"emotion", "pixels", "Usage", 48};

// AffectNet's expression codes. Contempt has no place among cumtl's 7 emotions, and
// None, Uncertain and No-Face are not emotions: their rows are skipped (and counted).
inline constexpr std::array<LabelCode, 11> affectnet_codes{{
    {0, "Neutral", detail::emotion("neutral")},
    {1, "Happy", detail::emotion("happiness")},
    {2, "Sad", detail::emotion("sadness")},
    {3, "Surprise", detail::emotion("surprise")},
    {4, "Fear", detail::emotion("fear")},
    {5, "Disgust", detail::emotion("disgust")},
    {6, "Anger", detail::emotion("anger")},
    {7, "Contempt", detail::no_label},
    {8, "None", detail::no_label},
    {9, "Uncertain", detail::no_label},
    {10, "No-Face", detail::no_label},
}};
struct AffectnetLayout {
  std::string_view path_column, x_column, y_column, width_column, height_column, expression_column;
};
inline constexpr AffectnetLayout affectnet_layout{"subDirectory_filePath", "face_x",    "face_y", "face_width",
                                                  "face_height",           "expression"};

// ─────────────────────────────────────────────────────────────────────────────

namespace detail {

template <std::size_t N>
constexpr bool all_names_known(const std::array<LabelCode, N>& table) {
  for (const LabelCode& entry : table)
    if (entry.label == bad_name) return false;
  return true;
}
static_assert(all_names_known(rafdb_basic_codes) && all_names_known(rafdb_compound_codes) &&
                  all_names_known(fer2013_codes) && all_names_known(affectnet_codes),
              "a label table names an emotion or compound expression that sample.hpp does not know");

template <std::size_t N>
const LabelCode* find_code(const std::array<LabelCode, N>& table, long long code) {
  for (const LabelCode& entry : table)
    if (entry.code == code) return &entry;
  return nullptr;
}

template <std::size_t N>
std::string codes_text(const std::array<LabelCode, N>& table) {
  std::string text;
  for (const LabelCode& entry : table) text += (text.empty() ? "" : ", ") + std::to_string(entry.code);
  return text;
}

// The table entry of a label code written in a file; an error naming the line when it is not a known code.
template <std::size_t N>
const LabelCode& label_code(const std::array<LabelCode, N>& table, std::string_view text, std::string_view what,
                            const std::string& where) {
  const std::optional<long long> code = parse_integer(text);
  const LabelCode* entry = code ? find_code(table, *code) : nullptr;
  CUMTL_REQUIRE(entry != nullptr, where, ": unknown ", what, " '", text, "' (expected one of ", codes_text(table), ")");
  return *entry;
}

// The index of a column in a header, compared without case; an error naming the file when it is absent.
inline std::size_t column(const std::vector<std::string>& header, std::string_view name, const std::string& where) {
  for (std::size_t i = 0; i < header.size(); ++i)
    if (lower(header[i]) == lower(name)) return i;
  CUMTL_FAIL(where, ": the header has no '", name, "' column");
}

inline void require_field_count(const std::vector<std::string>& fields, std::size_t expected,
                                const std::string& where) {
  CUMTL_REQUIRE(fields.size() >= expected, where, ": too few fields (", fields.size(), "; the header has ", expected,
                ")");
  CUMTL_REQUIRE(fields.size() <= expected, where, ": too many fields (", fields.size(), "; the header has ", expected,
                ")");
}

// One image file with its labels and, for AffectNet, the face box to crop.
struct ImageEntry {
  std::filesystem::path file;
  Labels labels;
  std::optional<std::array<double, 4>> face;  // x, y, width, height in pixels
};

// The shared half of the readers whose samples are image files.
class ImageListDataset : public Dataset {
 public:
  std::string name() const override { return name_; }
  std::size_t size() const override { return entries_.size(); }
  Labels labels(std::size_t index) const override { return at(index).labels; }

  Sample load(std::size_t index) const override {
    const ImageEntry& entry = at(index);
    Image image = decode_image(entry.file, limits_);
    if (entry.face) image = crop_face(image, *entry.face, entry.file);
    return Sample{entry.file.string(), domain_, std::move(image), entry.labels};
  }

  // The image file of sample `index`.
  const std::filesystem::path& file(std::size_t index) const { return at(index).file; }

 protected:
  ImageListDataset(std::string name, std::string domain, ImageLimits limits)
      : name_(std::move(name)), domain_(std::move(domain)), limits_(limits) {}

  const ImageEntry& at(std::size_t index) const {
    CUMTL_REQUIRE(index < entries_.size(), name_, ": sample ", index, " is out of range (", entries_.size(),
                  " samples)");
    return entries_[index];
  }

  // The face box clipped to the image; a box with no pixel inside the image is an error.
  static Image crop_face(const Image& image, const std::array<double, 4>& box, const std::filesystem::path& file) {
    const auto clip = [](double value, int limit) { return int(std::clamp(std::lround(value), 0L, long(limit))); };
    const int left = clip(box[0], image.width), top = clip(box[1], image.height);
    const int right = clip(box[0] + box[2], image.width), bottom = clip(box[1] + box[3], image.height);
    CUMTL_REQUIRE(right > left && bottom > top, "image ", quoted(file), ": the face box ", box[2], "x", box[3],
                  " at (x ", box[0], ", y ", box[1], ") lies outside the ", image.width, "x", image.height, " image");
    return crop(image, top, left, bottom - top, right - left);
  }

  std::string name_, domain_;
  ImageLimits limits_;
  std::vector<ImageEntry> entries_;
};

// RAF-DB's two label lists share one format: `<prefix>_<number>.jpg <code>`.
template <std::size_t N>
void read_rafdb_list(const std::filesystem::path& root, const RafdbLayout& layout,
                     const std::array<LabelCode, N>& codes, bool is_compound, DataSplit split, bool aligned,
                     std::vector<ImageEntry>& entries) {
  const std::filesystem::path list = root / layout.labels;
  const std::filesystem::path images = root / (aligned ? layout.aligned_images : layout.original_images);
  CUMTL_REQUIRE(std::filesystem::exists(list), "RAF-DB: no label list ", quoted(list), " (is ", quoted(root),
                " RAF-DB's root, the folder holding basic/ and compound/?)");
  for_each_line(list, "RAF-DB label list", [&](std::size_t number, std::string_view line) {
    const std::string where = at_line(list, number);
    std::vector<std::string> fields;
    for (std::string_view rest = trim(line); !(rest = trim(rest)).empty();) {
      const std::size_t end = std::min(rest.find_first_of(" \t"), rest.size());
      fields.emplace_back(rest.substr(0, end));
      rest.remove_prefix(end);
    }
    CUMTL_REQUIRE(fields.size() == 2, where, ": expected '<image> <label>', found ", fields.size(), " fields");
    const std::string& name = fields[0];
    const SplitWord* word = nullptr;
    for (const SplitWord& candidate : rafdb_split_prefixes)
      if (name.starts_with(std::string(candidate.word) + "_")) word = &candidate;
    CUMTL_REQUIRE(word != nullptr, where, ": the image name '", name, "' starts with neither train_ nor test_");
    const LabelCode& code = label_code(codes, fields[1], "label", where);
    if (split != DataSplit::all && split != word->split) return;
    ImageEntry entry;
    const std::filesystem::path given(name);
    entry.file =
        aligned ? images / (given.stem().string() + std::string(layout.aligned_suffix) + ".jpg") : images / given;
    (is_compound ? entry.labels.compound : entry.labels.emotion) = code.label;
    entries.push_back(std::move(entry));
  });
}

}  // namespace detail

struct RafdbOptions {
  DataSplit split = DataSplit::train;  // train, test or all
  bool aligned = true;                 // the 100×100 aligned crops, or the original images
  std::string domain = "rafdb";
  ImageLimits limits = {};
};

// RAF-DB's basic expressions; `root` holds basic/ (and compound/).
class RafdbBasic final : public detail::ImageListDataset {
 public:
  explicit RafdbBasic(const std::filesystem::path& root, RafdbOptions options = {})
      : ImageListDataset("rafdb-basic-" + std::string(split_name(options.split)), options.domain, options.limits) {
    CUMTL_REQUIRE(options.split != DataSplit::validation, "RAF-DB has train and test splits, no validation split");
    detail::read_rafdb_list(root, rafdb_basic_layout, rafdb_basic_codes, false, options.split, options.aligned,
                            entries_);
  }
};

// RAF-DB's compound expressions; `root` holds compound/ (and basic/).
class RafdbCompound final : public detail::ImageListDataset {
 public:
  explicit RafdbCompound(const std::filesystem::path& root, RafdbOptions options = {})
      : ImageListDataset("rafdb-compound-" + std::string(split_name(options.split)), options.domain, options.limits) {
    CUMTL_REQUIRE(options.split != DataSplit::validation, "RAF-DB has train and test splits, no validation split");
    detail::read_rafdb_list(root, rafdb_compound_layout, rafdb_compound_codes, true, options.split, options.aligned,
                            entries_);
  }
};

struct EmotionetOptions {
  std::string domain = "emotionet";
  // Drop (and count) rows whose image is not under the image root, as when
  // some of the table's URLs could not be downloaded; otherwise load() fails on them.
  bool skip_missing_images = false;
  ImageLimits limits = {};
};

// An EmotioNet AU table: a header, then per row an image (URL or file name) and
// one value per AU column. Tab- or comma-separated, whichever the header uses.
// An image is found under `image_root` by the last part of its name or URL.
class EmotionetTable final : public detail::ImageListDataset {
 public:
  EmotionetTable(const std::filesystem::path& table, const std::filesystem::path& image_root,
                 EmotionetOptions options = {})
      : ImageListDataset("emotionet", options.domain, options.limits) {
    std::vector<int> columns;  // index into au_numbers per AU column, −1: not an AU cumtl knows
    char delimiter = ',';
    detail::for_each_line(table, "EmotioNet table", [&](std::size_t number, std::string_view line) {
      const std::string where = detail::at_line(table, number);
      if (number_of_columns_ == 0) {
        delimiter = line.find('\t') != std::string_view::npos ? '\t' : ',';
        const std::vector<std::string> header = detail::split_fields(line, delimiter, where);
        CUMTL_REQUIRE(header.size() >= 2, where, ": the header names an image column and no AU column");
        for (std::size_t i = 1; i < header.size(); ++i) columns.push_back(parse_au_column(header[i], where));
        number_of_columns_ = header.size();
        return;
      }
      const std::vector<std::string> fields = detail::split_fields(line, delimiter, where);
      detail::require_field_count(fields, number_of_columns_, where);
      ImageEntry entry;
      entry.file = image_root / file_name(fields[0], where);
      for (std::size_t i = 1; i < fields.size(); ++i) {
        const LabelCode& value = detail::label_code(emotionet_au_values, fields[i], "AU value", where);
        if (columns[i - 1] >= 0) entry.labels.aus[columns[i - 1]] = std::int8_t(value.label);
      }
      if (options.skip_missing_images && !std::filesystem::is_regular_file(entry.file)) {
        ++skipped_;
        return;
      }
      entries_.push_back(std::move(entry));
    });
    CUMTL_REQUIRE(number_of_columns_ > 0, "EmotioNet table ", detail::quoted(table), " is empty: it has no header");
  }

  // Rows dropped because their image was missing (with skip_missing_images).
  std::size_t skipped() const { return skipped_; }
  // AU numbers of the header that cumtl does not know, whose values are ignored.
  const std::vector<int>& ignored_aus() const { return ignored_aus_; }

 private:
  using ImageEntry = detail::ImageEntry;

  int parse_au_column(const std::string& name, const std::string& where) {
    std::string_view text = detail::trim(name);
    if (text.size() >= 2 && (text[0] == 'A' || text[0] == 'a') && (text[1] == 'U' || text[1] == 'u'))
      text = detail::trim(text.substr(2));
    const std::optional<long long> number = detail::parse_integer(text);
    CUMTL_REQUIRE(number && *number > 0 && *number < 100, where, ": column '", name,
                  "' is not an AU (expected a name like AU12 or 12)");
    if (const std::optional<int> index = au_index(int(*number))) return *index;
    ignored_aus_.push_back(int(*number));
    return -1;
  }

  // The last part of a path or URL, without a query or fragment.
  static std::string file_name(std::string_view image, const std::string& where) {
    image = image.substr(0, image.find_first_of("?#"));
    if (const std::size_t slash = image.find_last_of("/\\"); slash != std::string_view::npos)
      image.remove_prefix(slash + 1);
    CUMTL_REQUIRE(!image.empty(), where, ": the image name is empty");
    return std::string(image);
  }

  std::size_t number_of_columns_ = 0;
  std::size_t skipped_ = 0;
  std::vector<int> ignored_aus_;
};

struct Fer2013Options {
  DataSplit split = DataSplit::train;  // Training, PublicTest (validation), PrivateTest (test) or all
  std::string domain = "fer2013";
};

// FER2013's single CSV, whose images are inline: all are decoded at construction
// (35,887 × 2,304 bytes ≈ 80 MiB), so a bad row is found before training starts.
class Fer2013 final : public Dataset {
 public:
  explicit Fer2013(const std::filesystem::path& csv, Fer2013Options options = {})
      : csv_(csv), name_("fer2013-" + std::string(split_name(options.split))), domain_(options.domain) {
    const std::size_t pixel_count = std::size_t(fer2013_layout.side) * fer2013_layout.side;
    std::size_t emotion_at = 0, pixels_at = 0, usage_at = 0, columns = 0;
    detail::for_each_line(csv, "FER2013 file", [&](std::size_t number, std::string_view line) {
      const std::string where = detail::at_line(csv, number);
      const std::vector<std::string> fields = detail::split_fields(line, ',', where);
      if (columns == 0) {
        emotion_at = detail::column(fields, fer2013_layout.emotion_column, where);
        pixels_at = detail::column(fields, fer2013_layout.pixels_column, where);
        usage_at = detail::column(fields, fer2013_layout.usage_column, where);
        columns = fields.size();
        return;
      }
      detail::require_field_count(fields, columns, where);
      const LabelCode& code = detail::label_code(fer2013_codes, fields[emotion_at], "emotion", where);
      const SplitWord* usage = nullptr;
      for (const SplitWord& word : fer2013_usages)
        if (word.word == fields[usage_at]) usage = &word;
      CUMTL_REQUIRE(usage != nullptr, where, ": unknown Usage '", fields[usage_at],
                    "' (expected Training, PublicTest or PrivateTest)");
      if (options.split != DataSplit::all && options.split != usage->split) return;
      const std::size_t first = pixels_.size();
      std::string_view values = fields[pixels_at];
      while (!(values = detail::trim(values)).empty()) {
        const std::size_t end = std::min(values.find_first_of(" \t"), values.size());
        const std::optional<long long> value = detail::parse_integer(values.substr(0, end));
        CUMTL_REQUIRE(value && *value >= 0 && *value <= 255, where, ": pixel ", pixels_.size() - first + 1, " is '",
                      values.substr(0, end), "', not a grey value 0..255");
        CUMTL_REQUIRE(pixels_.size() - first < pixel_count, where, ": more than ", pixel_count, " pixels");
        pixels_.push_back(std::uint8_t(*value));
        values.remove_prefix(end);
      }
      CUMTL_REQUIRE(pixels_.size() - first == pixel_count, where, ": ", pixels_.size() - first, " pixels, not the ",
                    pixel_count, " of a ", fer2013_layout.side, "x", fer2013_layout.side, " image");
      Labels labels;
      labels.emotion = code.label;
      rows_.push_back({number, labels});
    });
    CUMTL_REQUIRE(columns > 0, "FER2013 file ", detail::quoted(csv), " is empty: it has no header");
  }

  std::string name() const override { return name_; }
  std::size_t size() const override { return rows_.size(); }
  Labels labels(std::size_t index) const override { return at(index).labels; }

  Sample load(std::size_t index) const override {
    const Row& row = at(index);
    const int side = fer2013_layout.side;
    Image image(side, side, 1);
    const auto first = pixels_.begin() + std::ptrdiff_t(index * image.pixels.size());
    std::copy(first, first + std::ptrdiff_t(image.pixels.size()), image.pixels.begin());
    return Sample{csv_.string() + ":" + std::to_string(row.line), domain_, std::move(image), row.labels};
  }

 private:
  struct Row {
    std::size_t line;
    Labels labels;
  };

  const Row& at(std::size_t index) const {
    CUMTL_REQUIRE(index < rows_.size(), name_, ": sample ", index, " is out of range (", rows_.size(), " samples)");
    return rows_[index];
  }

  std::filesystem::path csv_;
  std::string name_, domain_;
  std::vector<Row> rows_;
  std::vector<std::uint8_t> pixels_;  // rows_.size() images of side² grey values
};

struct AffectnetOptions {
  std::string domain = "affectnet";
  bool crop_face = true;  // cut the annotated face box out of the image
  ImageLimits limits = {};
};

// An AffectNet annotation CSV (training.csv or validation.csv); images are
// `image_root / subDirectory_filePath`. Rows whose expression has no cumtl label
// (see affectnet_codes) are skipped and counted.
class Affectnet final : public detail::ImageListDataset {
 public:
  Affectnet(const std::filesystem::path& csv, const std::filesystem::path& image_root, AffectnetOptions options = {})
      : ImageListDataset("affectnet", options.domain, options.limits) {
    std::array<std::size_t, 6> at{};  // path, x, y, width, height, expression
    std::size_t columns = 0;
    detail::for_each_line(csv, "AffectNet file", [&](std::size_t number, std::string_view line) {
      const std::string where = detail::at_line(csv, number);
      const std::vector<std::string> fields = detail::split_fields(line, ',', where);
      if (columns == 0) {
        const AffectnetLayout& l = affectnet_layout;
        at = {detail::column(fields, l.path_column, where),   detail::column(fields, l.x_column, where),
              detail::column(fields, l.y_column, where),      detail::column(fields, l.width_column, where),
              detail::column(fields, l.height_column, where), detail::column(fields, l.expression_column, where)};
        columns = fields.size();
        return;
      }
      detail::require_field_count(fields, columns, where);
      const LabelCode& code = detail::label_code(affectnet_codes, fields[at[5]], "expression", where);
      if (code.label == detail::no_label) {
        ++skipped_[std::size_t(&code - affectnet_codes.data())];
        return;
      }
      CUMTL_REQUIRE(!fields[at[0]].empty(), where, ": the image path is empty");
      detail::ImageEntry entry;
      entry.file = detail::resolve(image_root, fields[at[0]]);
      entry.labels.emotion = code.label;
      if (options.crop_face) {
        std::array<double, 4> box{};
        for (std::size_t k = 0; k < 4; ++k) {
          const std::optional<double> value = detail::parse_number(fields[at[k + 1]]);
          CUMTL_REQUIRE(value.has_value(), where, ": ", fields_names()[k], " is '", fields[at[k + 1]],
                        "', not a number");
          box[k] = *value;
        }
        CUMTL_REQUIRE(box[2] > 0 && box[3] > 0, where, ": the face box is ", box[2], "x", box[3]);
        entry.face = box;
      }
      entries_.push_back(std::move(entry));
    });
    CUMTL_REQUIRE(columns > 0, "AffectNet file ", detail::quoted(csv), " is empty: it has no header");
  }

  // Rows skipped because their expression has no cumtl label, in all and per expression code.
  std::size_t skipped() const {
    std::size_t total = 0;
    for (std::size_t count : skipped_) total += count;
    return total;
  }
  std::size_t skipped(int code) const {
    const LabelCode* entry = detail::find_code(affectnet_codes, code);
    return entry ? skipped_[std::size_t(entry - affectnet_codes.data())] : 0;
  }

 private:
  static std::array<std::string_view, 4> fields_names() {
    const AffectnetLayout& l = affectnet_layout;
    return {l.x_column, l.y_column, l.width_column, l.height_column};
  }

  std::array<std::size_t, affectnet_codes.size()> skipped_{};
};

}  // namespace cumtl::data
