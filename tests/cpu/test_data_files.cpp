// The file side of the data pipeline: image decoding and its refusals, resizing
// against hand-computed pixels, atomic PNG writes, the manifest format and the
// real datasets' readers, each on small fixtures written here on the fly.
#include <stb/stb_image_write.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "../support/testing.hpp"
#include "cumtl/data/formats.hpp"
#include "cumtl/data/image_io.hpp"
#include "cumtl/data/manifest.hpp"

namespace fs = std::filesystem;
using cumtl::data::Image;
using cumtl::data::Labels;

namespace {

// A fresh folder under the system's temporary folder, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::random_device random;
    path_ = fs::temp_directory_path() / ("cumtl-data-test-" + std::to_string(random()) + std::to_string(random()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

void write_bytes(const fs::path& file, const std::vector<std::uint8_t>& bytes) {
  fs::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  REQUIRE(out.good());
}

void write_text(const fs::path& file, const std::string& text) {
  write_bytes(file, std::vector<std::uint8_t>(text.begin(), text.end()));
}

void append(void* context, void* data, int size) {
  auto* out = static_cast<std::vector<std::uint8_t>*>(context);
  out->insert(out->end(), static_cast<std::uint8_t*>(data), static_cast<std::uint8_t*>(data) + size);
}

std::vector<std::uint8_t> encode_png(const Image& image) {
  std::vector<std::uint8_t> bytes;
  REQUIRE(stbi_write_png_to_func(append, &bytes, image.width, image.height, image.channels, image.pixels.data(),
                                 image.width * image.channels));
  return bytes;
}

std::vector<std::uint8_t> encode_bmp(const Image& image) {
  std::vector<std::uint8_t> bytes;
  REQUIRE(stbi_write_bmp_to_func(append, &bytes, image.width, image.height, image.channels, image.pixels.data()));
  return bytes;
}

std::vector<std::uint8_t> encode_jpeg(const Image& image) {
  std::vector<std::uint8_t> bytes;
  REQUIRE(stbi_write_jpg_to_func(append, &bytes, image.width, image.height, image.channels, image.pixels.data(), 100));
  return bytes;
}

// An image whose values differ between pixels and channels: a smooth ramp (up to 20×30 RGB), so JPEG keeps it well.
Image ramp(int height, int width, int channels) {
  Image image(height, width, channels);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < channels; ++c) image.at(y, x)[c] = std::uint8_t((20 + 3 * y + 2 * x + 60 * c) % 256);
  return image;
}

// A baseline JPEG with one component (true grey), 8×8, written by hand because
// stb's encoder always writes three: quantization 8 everywhere, one Huffman code
// '0' per table (DC: category 6, AC: end of block), and one block whose DC
// difference is +50. Every pixel decodes to 128 + 50·8/8 = 178.
std::vector<std::uint8_t> grey_jpeg() {
  std::vector<std::uint8_t> b{0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x43, 0x00};  // SOI, DQT
  b.insert(b.end(), 64, 8);
  b.insert(b.end(), {0xFF, 0xC0, 0x00, 0x0B, 8, 0, 8, 0, 8, 1, 1, 0x11, 0});  // SOF0: 8×8, 1 component
  for (std::uint8_t table : {std::uint8_t(0x00), std::uint8_t(0x10)}) {       // DHT: DC 0, AC 0
    b.insert(b.end(), {0xFF, 0xC4, 0x00, 0x14, table, 1});
    b.insert(b.end(), 15, 0);
    b.push_back(table == 0x00 ? 6 : 0);
  }
  b.insert(b.end(), {0xFF, 0xDA, 0x00, 0x08, 1, 1, 0x00, 0, 63, 0});  // SOS
  b.push_back(0b0'110010'0);  // DC code '0', the 6 bits of 50, AC code '0' (end of block)
  b.insert(b.end(), {0xFF, 0xD9});
  return b;
}

int max_difference(const Image& a, const Image& b) {
  REQUIRE(a.pixels.size() == b.pixels.size());
  int worst = 0;
  for (std::size_t i = 0; i < a.pixels.size(); ++i) worst = std::max(worst, std::abs(a.pixels[i] - b.pixels[i]));
  return worst;
}

std::string decode_error(const std::vector<std::uint8_t>& bytes, const std::string& name,
                         cumtl::data::ImageLimits limits = {}) {
  return cumtl_test::error_message([&] { (void)cumtl::data::decode_image_memory(bytes, name, limits); });
}

Labels emotion_label(std::string_view name) {
  Labels labels;
  labels.emotion = *cumtl::data::index_of(cumtl::data::emotion_names, name);
  return labels;
}

std::int8_t au(const Labels& labels, int number) {
  return labels.aus[*cumtl::data::au_index(number)];
}

// 2,304 grey values as FER2013 writes them, pixel i = (i * step) mod 256.
std::string fer_pixels(int step, int count = 48 * 48) {
  std::string text;
  for (int i = 0; i < count; ++i) text += (i ? " " : "") + std::to_string(i * step % 256);
  return text;
}

}  // namespace

TEST_SUITE("data") {
  TEST_CASE("data: PNG decodes exactly in grey and RGB and alpha is dropped") {
    const Image grey = ramp(5, 7, 1), rgb = ramp(5, 7, 3);
    CHECK(cumtl::data::decode_image_memory(encode_png(grey), "grey.png").pixels == grey.pixels);
    const Image decoded = cumtl::data::decode_image_memory(encode_png(rgb), "rgb.png");
    CHECK(decoded.height == 5);
    CHECK(decoded.width == 7);
    CHECK(decoded.channels == 3);
    CHECK(decoded.pixels == rgb.pixels);

    Image grey_alpha = ramp(3, 4, 2), rgba = ramp(3, 4, 4);
    const Image from_grey_alpha = cumtl::data::decode_image_memory(encode_png(grey_alpha), "ga.png");
    const Image from_rgba = cumtl::data::decode_image_memory(encode_png(rgba), "rgba.png");
    REQUIRE(from_grey_alpha.channels == 1);
    REQUIRE(from_rgba.channels == 3);
    for (int y = 0; y < 3; ++y)
      for (int x = 0; x < 4; ++x) {
        CHECK(from_grey_alpha.at(y, x)[0] == grey_alpha.at(y, x)[0]);
        for (int c = 0; c < 3; ++c) CHECK(from_rgba.at(y, x)[c] == rgba.at(y, x)[c]);
      }
  }

  TEST_CASE("data: BMP decodes exactly and a grey BMP comes back as equal RGB channels") {
    const Image rgb = ramp(6, 5, 3), grey = ramp(6, 5, 1);
    CHECK(cumtl::data::decode_image_memory(encode_bmp(rgb), "rgb.bmp").pixels == rgb.pixels);
    // BMP stores grey as 24-bit colour (stb's writer) or a palette (stb's reader expands it).
    const Image from_grey = cumtl::data::decode_image_memory(encode_bmp(grey), "grey.bmp");
    REQUIRE(from_grey.channels == 3);
    CHECK(cumtl::data::to_rgb(grey).pixels == from_grey.pixels);
  }

  TEST_CASE("data: JPEG decodes in RGB within compression error and a one-component JPEG as grey") {
    const Image rgb = ramp(16, 16, 3);
    const Image decoded = cumtl::data::decode_image_memory(encode_jpeg(rgb), "rgb.jpg");
    REQUIRE(decoded.channels == 3);
    CHECK(max_difference(decoded, rgb) <= 8);

    const Image grey = cumtl::data::decode_image_memory(grey_jpeg(), "grey.jpg");
    REQUIRE(grey.channels == 1);
    REQUIRE(grey.height == 8);
    REQUIRE(grey.width == 8);
    for (std::uint8_t value : grey.pixels) CHECK(std::abs(int(value) - 178) <= 1);
  }

  TEST_CASE("data: write_png then decode_image round trip through a file") {
    TempDir dir;
    const Image grey = ramp(9, 4, 1), rgb = ramp(4, 9, 3);
    cumtl::data::write_png(dir / "grey.png", grey);
    cumtl::data::write_png(dir / "rgb.png", rgb);
    cumtl::data::write_png(dir / "rgb.png", rgb);  // over an existing file
    CHECK(cumtl::data::decode_image(dir / "grey.png").pixels == grey.pixels);
    CHECK(cumtl::data::decode_image(dir / "rgb.png").pixels == rgb.pixels);
    CHECK(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()) == 2);  // no temporary left
    CHECK_ERROR_WITH(cumtl::data::write_png(dir / "empty.png", Image()), "empty.png", "empty");
  }

  TEST_CASE("data: a header claiming a huge image is refused before decoding") {
    // PNG: signature and an IHDR claiming 100000×100000 RGB, then nothing.
    std::vector<std::uint8_t> png{0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
    png.insert(png.end(), {0x00, 0x01, 0x86, 0xA0, 0x00, 0x01, 0x86, 0xA0, 8, 2, 0, 0, 0, 0, 0, 0, 0});
    CHECK(cumtl_test::contains_all(decode_error(png, "huge.png"),
                                   {"huge.png", "too large", "100000x100000", "10000000000"}));

    // BMP: a 54-byte header claiming 100000×100000 at 24 bits per pixel.
    std::vector<std::uint8_t> bmp(54, 0);
    const auto le32 = [&](std::size_t at, std::uint32_t value) {
      for (int i = 0; i < 4; ++i) bmp[at + i] = std::uint8_t(value >> (8 * i));
    };
    bmp[0] = 'B';
    bmp[1] = 'M';
    le32(2, 54);
    le32(10, 54);
    le32(14, 40);
    le32(18, 100000);
    le32(22, 100000);
    bmp[26] = 1;
    bmp[28] = 24;
    CHECK(cumtl_test::contains_all(decode_error(bmp, "huge.bmp"), {"huge.bmp", "too large", "100000x100000"}));

    // JPEG: a frame header claiming 65535×65535.
    std::vector<std::uint8_t> jpeg = grey_jpeg();
    jpeg[0x4C] = jpeg[0x4D] = jpeg[0x4E] = jpeg[0x4F] = 0xFF;  // height and width of SOF0
    CHECK(cumtl_test::contains_all(decode_error(jpeg, "huge.jpg"), {"huge.jpg", "too large", "65535x65535"}));

    // The limit is the caller's.
    CHECK(cumtl_test::contains_all(decode_error(encode_png(ramp(10, 10, 1)), "small.png", {.max_pixels = 99}),
                                   {"small.png", "too large", "10x10", "99"}));
    CHECK_NOTHROW(
        (void)cumtl::data::decode_image_memory(encode_png(ramp(10, 10, 1)), "small.png", {.max_pixels = 100}));
  }

  TEST_CASE("data: missing empty truncated and non-image files are errors naming the file") {
    TempDir dir;
    CHECK_ERROR_WITH(cumtl::data::decode_image(dir / "absent.png"), "absent.png", "no such file");
    CHECK_ERROR_WITH(cumtl::data::decode_image(dir.path()), dir.path().string(), "not a regular file");
    write_bytes(dir / "empty.png", {});
    CHECK_ERROR_WITH(cumtl::data::decode_image(dir / "empty.png"), "empty.png", "empty");
    write_text(dir / "notes.jpg", "path,domain\nimages/a.png,test\n");
    CHECK_ERROR_WITH(cumtl::data::decode_image(dir / "notes.jpg"), "notes.jpg", "not an image");

    const Image image = ramp(32, 32, 3);
    for (auto [name, bytes] : {std::pair{"cut.png", encode_png(image)}, std::pair{"cut.bmp", encode_bmp(image)},
                               std::pair{"cut.jpg", encode_jpeg(image)}}) {
      bytes.resize(bytes.size() / 2);
      write_bytes(dir / name, bytes);
      CHECK_ERROR_WITH(cumtl::data::decode_image(dir / name), name, "truncated");
    }
    std::vector<std::uint8_t> header_only = encode_png(image);
    header_only.resize(20);
    CHECK(cumtl_test::contains_all(decode_error(header_only, "short.png"), {"short.png", "truncated"}));
  }

  TEST_CASE("data: resize matches hand-computed bilinear pixels") {
    // 2×2 → 4×4: output centres fall at source coordinates 0.25 and 0.75 of a
    // pixel, so the inner outputs mix their neighbours 3:1 and the border copies.
    Image small(2, 2, 1);
    small.pixels = {0, 80, 160, 240};
    const Image big = cumtl::data::resize(small, 4, 4);
    CHECK(big.pixels == std::vector<std::uint8_t>{0, 20, 60, 80,       //
                                                  40, 60, 100, 120,    //
                                                  120, 140, 180, 200,  //
                                                  160, 180, 220, 240});

    // 4 → 2 along x: the triangle widens to a radius of 2 pixels; output 0
    // (centre 1.0) weighs inputs 0, 1, 2 by 0.75, 0.75, 0.25 (the tap at −1
    // falls outside and the rest are renormalized): (0·.75 + 40·.75 + 80·.25) / 1.75
    // = 28.57; output 1 weighs inputs 1, 2, 3 by .25, .75, .75: 160 / 1.75 = 91.43.
    Image row(1, 4, 1);
    row.pixels = {0, 40, 80, 120};
    CHECK(cumtl::data::resize(row, 1, 2).pixels == std::vector<std::uint8_t>{29, 91});

    // The same size is the identity; channels are resampled independently.
    const Image rgb = ramp(5, 6, 3);
    CHECK(cumtl::data::resize(rgb, 5, 6).pixels == rgb.pixels);
    Image two(1, 2, 3);
    two.pixels = {0, 100, 200, 80, 20, 40};
    CHECK(cumtl::data::resize(two, 1, 4).pixels ==
          std::vector<std::uint8_t>{0, 100, 200, 20, 80, 160, 60, 40, 80, 80, 20, 40});
    CHECK_ERROR_WITH(cumtl::data::resize(rgb, 0, 3), "resize", "0x3");
  }

  TEST_CASE("data: to_rgb and crop") {
    Image grey(1, 2, 1);
    grey.pixels = {7, 9};
    CHECK(cumtl::data::to_rgb(grey).pixels == std::vector<std::uint8_t>{7, 7, 7, 9, 9, 9});
    const Image image = ramp(6, 8, 3);
    const Image part = cumtl::data::crop(image, 2, 3, 3, 4);
    REQUIRE(part.height == 3);
    REQUIRE(part.width == 4);
    CHECK(part.at(0, 0)[1] == image.at(2, 3)[1]);
    CHECK(part.at(2, 3)[2] == image.at(4, 6)[2]);
    CHECK_ERROR_WITH(cumtl::data::crop(image, 4, 0, 3, 1), "crop", "not inside");
  }

  TEST_CASE("data: write_png leaves no partial file when the folder does not exist") {
    TempDir dir;
    const fs::path target = dir / "absent/face.png";
    CHECK_ERROR_WITH(cumtl::data::write_png(target, ramp(4, 4, 3)), "face.png", "does not exist");
    CHECK(!fs::exists(target));
    CHECK(fs::is_empty(dir.path()));

    // A rename that fails (the target is a folder) removes the temporary file.
    fs::create_directories(dir / "taken.png");
    CHECK_ERROR_WITH(cumtl::data::write_png(dir / "taken.png", ramp(4, 4, 3)), "taken.png");
    CHECK(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()) == 1);
    CHECK(fs::is_empty(dir / "taken.png"));
  }

  TEST_CASE("data: manifest round trip keeps paths and domains and labels") {
    TempDir dir;
    std::vector<cumtl::data::ManifestRow> rows(3);
    rows[0] = {"images/a.png", "emotionet", Labels{}};
    rows[0].labels.aus[*cumtl::data::au_index(1)] = 1;
    rows[0].labels.aus[*cumtl::data::au_index(12)] = 0;
    rows[1] = {"images/b, with comma.png", "rafdb", emotion_label("surprise")};
    rows[2] = {"images/c.png", "test", emotion_label("neutral")};
    rows[2].labels.compound = 10;
    rows[2].labels.aus[*cumtl::data::au_index(43)] = 1;
    fs::create_directories(dir / "images");
    for (const auto& row : rows) cumtl::data::write_png(dir / row.path, ramp(4, 5, 3));
    const std::array<int, 4> columns{43, 1, 12, 26};
    cumtl::data::write_manifest(dir / "faces.csv", rows, columns);

    const cumtl::data::ManifestDataset dataset(dir / "faces.csv");
    CHECK(dataset.name() == "faces");
    REQUIRE(dataset.size() == 3);
    for (std::size_t i = 0; i < 3; ++i) {
      const Labels labels = dataset.labels(i);
      CHECK(labels.emotion == rows[i].labels.emotion);
      CHECK(labels.compound == rows[i].labels.compound);
      CHECK(labels.aus == rows[i].labels.aus);
      CHECK(dataset.domain(i) == rows[i].domain);
      CHECK(dataset.file(i) == (dir.path() / rows[i].path).lexically_normal());
    }
    const cumtl::data::Sample sample = dataset.load(1);
    CHECK(sample.domain == "rafdb");
    CHECK(sample.image.pixels == ramp(4, 5, 3).pixels);
    CHECK(sample.labels.emotion == 3);
    CHECK_ERROR_WITH(dataset.load(3), "faces.csv", "out of range");

    // A row labelling an AU without a column would lose the label.
    const std::array<int, 1> too_few{1};
    CHECK_ERROR_WITH(cumtl::data::write_manifest(dir / "lossy.csv", rows, too_few), "lossy.csv", "row 0", "AU12",
                     "no column");
    const std::array<int, 1> unknown{3};
    CHECK_ERROR_WITH(cumtl::data::write_manifest(dir / "bad.csv", rows, unknown), "bad.csv", "unknown AU 3");
    CHECK(!fs::exists(dir / "lossy.csv"));
  }

  TEST_CASE("data: manifest reads quoted fields and any AU columns in any order") {
    TempDir dir;
    write_text(dir / "m.csv",
               "\xEF\xBB\xBFpath, emotion ,AU26,au4,domain\r\n"
               "\"x, y.png\",Happiness,1,0,\r\n"
               "\r\n"
               "/abs/z.png,,,-1,\"quoted \"\"domain\"\"\"\r\n");
    const cumtl::data::ManifestDataset dataset(dir / "m.csv", "mine");
    CHECK(dataset.name() == "mine");
    REQUIRE(dataset.size() == 2);
    CHECK(dataset.file(0) == dir.path() / "x, y.png");
    CHECK(dataset.labels(0).emotion == 1);
    CHECK(au(dataset.labels(0), 26) == 1);
    CHECK(au(dataset.labels(0), 4) == 0);
    CHECK(au(dataset.labels(0), 1) == -1);
    CHECK(dataset.domain(0) == "mine");  // an empty domain is the dataset's name
    CHECK(dataset.file(1) == fs::path("/abs/z.png"));
    CHECK(dataset.labels(1).emotion == -1);
    CHECK(au(dataset.labels(1), 26) == -1);
    CHECK(dataset.domain(1) == "quoted \"domain\"");
    CHECK_ERROR_WITH(dataset.load(1), "/abs/z.png", "no such file");
  }

  TEST_CASE("data: manifest errors name the file and the line") {
    TempDir dir;
    const auto fails = [&](const std::string& text) {
      write_text(dir / "bad.csv", text);
      return cumtl_test::error_message([&] { cumtl::data::ManifestDataset dataset(dir / "bad.csv"); });
    };
    const std::string header = "path,domain,emotion,compound,AU1,AU12\n";
    CHECK(cumtl_test::contains_all(fails(header + "a.png,d,,,1,0\nb.png,d,,,1\n"),
                                   {"bad.csv':3", "too few fields (5; the header has 6)"}));
    CHECK(cumtl_test::contains_all(fails(header + "a.png,d,,,1,0,1\n"),
                                   {"bad.csv':2", "too many fields (7; the header has 6)"}));
    CHECK(cumtl_test::contains_all(fails(header + "a.png,d,joy,,1,0\n"), {"bad.csv':2", "unknown emotion 'joy'"}));
    CHECK(cumtl_test::contains_all(fails(header + "a.png,d,,sadly_happy,1,0\n"),
                                   {"bad.csv':2", "unknown compound expression 'sadly_happy'"}));
    CHECK(cumtl_test::contains_all(fails(header + "a.png,d,,,1,2\n"), {"bad.csv':2", "AU12 is '2'"}));
    CHECK(cumtl_test::contains_all(fails(header + "a.png,d,,,1,yes\n"), {"bad.csv':2", "AU12 is 'yes'"}));
    CHECK(cumtl_test::contains_all(fails(header), {"bad.csv", "has a header and no rows"}));
    CHECK(cumtl_test::contains_all(fails("\n\n"), {"bad.csv", "empty"}));
    CHECK(cumtl_test::contains_all(fails("path,AU3\na.png,1\n"), {"bad.csv':1", "unknown AU column 'AU3'"}));
    CHECK(cumtl_test::contains_all(fails("path,mood\na.png,1\n"), {"bad.csv':1", "unknown column 'mood'"}));
    CHECK(cumtl_test::contains_all(fails("a.png,happiness\n"), {"bad.csv':1", "unknown column 'a.png'"}));
    CHECK(cumtl_test::contains_all(fails("domain,emotion\nd,happiness\n"), {"bad.csv':1", "no 'path' column"}));
    CHECK(cumtl_test::contains_all(fails("path,AU1,AU1\na.png,1,1\n"), {"bad.csv':1", "appears twice"}));
    CHECK(cumtl_test::contains_all(fails(header + "\"a.png,d,,,1,0\n"), {"bad.csv':2", "unterminated quote"}));
    CHECK(cumtl_test::contains_all(fails(header + ",d,,,1,0\n"), {"bad.csv':2", "path is empty"}));
    CHECK_ERROR_WITH(cumtl::data::ManifestDataset(dir / "none.csv"), "none.csv", "no such file");
  }

  TEST_CASE("data: RAF-DB basic maps its codes and splits by prefix") {
    TempDir dir;
    write_text(dir / "basic/EmoLabel/list_patition_label.txt",
               "train_00001.jpg 1\ntrain_00002.jpg 4\r\ntrain_00003.jpg 7\n\ntest_0001.jpg  6\ntest_0002.jpg 5\n");
    write_bytes(dir / "basic/Image/aligned/test_0001_aligned.jpg", encode_jpeg(ramp(100, 100, 3)));
    const cumtl::data::RafdbBasic train(dir.path());
    CHECK(train.name() == "rafdb-basic-train");
    REQUIRE(train.size() == 3);
    CHECK(train.labels(0).emotion == emotion_label("surprise").emotion);
    CHECK(train.labels(1).emotion == emotion_label("happiness").emotion);
    CHECK(train.labels(2).emotion == emotion_label("neutral").emotion);
    CHECK(train.labels(0).compound == -1);
    CHECK(train.file(1) == dir / "basic/Image/aligned/train_00002_aligned.jpg");

    const cumtl::data::RafdbBasic test(dir.path(), {.split = cumtl::data::DataSplit::test});
    REQUIRE(test.size() == 2);
    CHECK(test.labels(0).emotion == emotion_label("anger").emotion);
    CHECK(test.labels(1).emotion == emotion_label("sadness").emotion);
    const cumtl::data::Sample sample = test.load(0);
    CHECK(sample.domain == "rafdb");
    CHECK(sample.image.height == 100);
    CHECK(sample.labels.emotion == emotion_label("anger").emotion);
    CHECK_ERROR_WITH(test.load(1), "test_0002_aligned.jpg", "no such file");

    const cumtl::data::RafdbBasic all(dir.path(), {.split = cumtl::data::DataSplit::all, .aligned = false});
    CHECK(all.size() == 5);
    CHECK(all.file(3) == dir / "basic/Image/original/test_0001.jpg");
  }

  TEST_CASE("data: RAF-DB compound maps codes 1 to 11 in order and list errors name the line") {
    TempDir dir;
    std::string list;
    for (int code = 1; code <= 11; ++code)
      list += "train_" + std::to_string(code) + ".jpg " + std::to_string(code) + "\n";
    list += "test_0001.jpg 3\n";
    write_text(dir / "compound/EmoLabel/list_patition_label.txt", list);
    const cumtl::data::RafdbCompound train(dir.path());
    REQUIRE(train.size() == 11);
    for (int code = 1; code <= 11; ++code) {
      CHECK(train.labels(code - 1).compound == code - 1);
      CHECK(train.labels(code - 1).emotion == -1);
    }
    CHECK(train.file(0) == dir / "compound/Image/aligned/train_1_aligned.jpg");
    CHECK(cumtl::data::RafdbCompound(dir.path(), {.split = cumtl::data::DataSplit::test}).size() == 1);

    write_text(dir / "compound/EmoLabel/list_patition_label.txt", "train_1.jpg 1\ntrain_2.jpg 12\n");
    CHECK_ERROR_WITH(cumtl::data::RafdbCompound(dir.path()), "list_patition_label.txt':2", "unknown label '12'");
    write_text(dir / "compound/EmoLabel/list_patition_label.txt", "val_1.jpg 1\n");
    CHECK_ERROR_WITH(cumtl::data::RafdbCompound(dir.path()), "list_patition_label.txt':1", "neither train_ nor test_");
    write_text(dir / "compound/EmoLabel/list_patition_label.txt", "train_1.jpg\n");
    CHECK_ERROR_WITH(cumtl::data::RafdbCompound(dir.path()), "list_patition_label.txt':1", "found 1 fields");
    CHECK_ERROR_WITH(cumtl::data::RafdbBasic(dir.path()), "basic/EmoLabel/list_patition_label.txt", "no label list");
  }

  TEST_CASE("data: EmotioNet tables take AUs from the header and 999 is missing") {
    TempDir dir;
    write_text(dir / "aus.tsv",
               "URL\tAU1\t2\tAU 4\tAU10\tAU43\n"
               "http://example.org/faces/a.jpg?size=big\t1\t0\t999\t1\t0\n"
               "b.png\t999\t999\t1\t0\t1\n");
    write_bytes(dir / "images/a.jpg", encode_jpeg(ramp(8, 8, 3)));
    const cumtl::data::EmotionetTable table(dir / "aus.tsv", dir / "images");
    REQUIRE(table.size() == 2);
    CHECK(table.ignored_aus() == std::vector<int>{10});  // AU10 is not one cumtl knows
    const Labels a = table.labels(0), b = table.labels(1);
    CHECK(au(a, 1) == 1);
    CHECK(au(a, 2) == 0);
    CHECK(au(a, 4) == -1);
    CHECK(au(a, 43) == 0);
    CHECK(au(a, 12) == -1);  // no column
    CHECK(a.emotion == -1);
    CHECK(au(b, 1) == -1);
    CHECK(au(b, 4) == 1);
    CHECK(au(b, 43) == 1);
    CHECK(table.file(0) == dir / "images/a.jpg");
    const cumtl::data::Sample sample = table.load(0);
    CHECK(sample.domain == "emotionet");
    CHECK(sample.image.width == 8);
    CHECK_ERROR_WITH(table.load(1), "b.png", "no such file");

    const cumtl::data::EmotionetTable present(dir / "aus.tsv", dir / "images", {.skip_missing_images = true});
    CHECK(present.size() == 1);
    CHECK(present.skipped() == 1);

    write_text(dir / "aus.csv", "image,AU12,AU25\nc.jpg,1,0\nd.jpg,1,2\n");
    CHECK_ERROR_WITH(cumtl::data::EmotionetTable(dir / "aus.csv", dir.path()), "aus.csv':3", "unknown AU value '2'",
                     "1, 0, 999");
    write_text(dir / "aus.csv", "image,AU12,smile\nc.jpg,1,0\n");
    CHECK_ERROR_WITH(cumtl::data::EmotionetTable(dir / "aus.csv", dir.path()), "aus.csv':1", "'smile' is not an AU");
    write_text(dir / "aus.csv", "image,AU12,AU25\nc.jpg,1\n");
    CHECK_ERROR_WITH(cumtl::data::EmotionetTable(dir / "aus.csv", dir.path()), "aus.csv':2", "too few fields");
  }

  TEST_CASE("data: FER2013 builds 48x48 grey images and splits by Usage") {
    TempDir dir;
    write_text(dir / "fer2013.csv", "emotion,pixels,Usage\n0," + fer_pixels(1) + ",Training\n3," + fer_pixels(3) +
                                        ",PublicTest\n6," + fer_pixels(5) + ",PrivateTest\n5," + fer_pixels(7) +
                                        ",Training\n");
    const cumtl::data::Fer2013 train(dir / "fer2013.csv");
    CHECK(train.name() == "fer2013-train");
    REQUIRE(train.size() == 2);
    CHECK(train.labels(0).emotion == emotion_label("anger").emotion);
    CHECK(train.labels(1).emotion == emotion_label("surprise").emotion);
    const cumtl::data::Sample sample = train.load(1);
    REQUIRE(sample.image.height == 48);
    REQUIRE(sample.image.width == 48);
    REQUIRE(sample.image.channels == 1);
    CHECK(sample.image.at(0, 1)[0] == 7);
    CHECK(sample.image.at(1, 0)[0] == 48 * 7 % 256);
    CHECK(sample.image.at(47, 47)[0] == 2303 * 7 % 256);
    CHECK(sample.source.ends_with("fer2013.csv:5"));
    CHECK(sample.domain == "fer2013");

    using cumtl::data::DataSplit;
    const cumtl::data::Fer2013 validation(dir / "fer2013.csv", {.split = DataSplit::validation});
    REQUIRE(validation.size() == 1);
    CHECK(validation.labels(0).emotion == emotion_label("happiness").emotion);
    const cumtl::data::Fer2013 test(dir / "fer2013.csv", {.split = DataSplit::test});
    REQUIRE(test.size() == 1);
    CHECK(test.labels(0).emotion == emotion_label("neutral").emotion);
    CHECK(test.load(0).image.at(0, 1)[0] == 5);
    CHECK(cumtl::data::Fer2013(dir / "fer2013.csv", {.split = DataSplit::all}).size() == 4);

    write_text(dir / "short.csv",
               "emotion,pixels,Usage\n0," + fer_pixels(1) + ",Training\n1," + fer_pixels(1, 2303) + ",Training\n");
    CHECK_ERROR_WITH(cumtl::data::Fer2013(dir / "short.csv"), "short.csv':3", "2303 pixels");
    write_text(dir / "code.csv", "emotion,pixels,Usage\n7," + fer_pixels(1) + ",Training\n");
    CHECK_ERROR_WITH(cumtl::data::Fer2013(dir / "code.csv"), "code.csv':2", "unknown emotion '7'");
    write_text(dir / "usage.csv", "emotion,pixels,Usage\n1," + fer_pixels(1) + ",Validation\n");
    CHECK_ERROR_WITH(cumtl::data::Fer2013(dir / "usage.csv"), "usage.csv':2", "unknown Usage 'Validation'");
    write_text(dir / "value.csv", "emotion,pixels,Usage\n1,1 2 300,Training\n");
    CHECK_ERROR_WITH(cumtl::data::Fer2013(dir / "value.csv"), "value.csv':2", "'300'");
    write_text(dir / "header.csv", "emotion,Usage\n");
    CHECK_ERROR_WITH(cumtl::data::Fer2013(dir / "header.csv"), "header.csv':1", "no 'pixels' column");
  }

  TEST_CASE("data: AffectNet skips codes without a cumtl emotion and crops the face box") {
    TempDir dir;
    const Image photo = ramp(20, 30, 3);
    fs::create_directories(dir / "images/12");
    cumtl::data::write_png(dir / "images/12/a.png", photo);
    write_text(dir / "training.csv",
               "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,"
               "arousal\n"
               "12/a.png,5,4,10,8,1.5;2.5;3.5,1,0.5,0.2\n"
               "12/b.png,0,0,10,10,1;2,7,0,0\n"
               "12/c.png,0,0,10,10,1;2,8,0,0\n"
               "12/d.png,0,0,10,10,1;2,9,0,0\n"
               "12/e.png,0,0,10,10,1;2,10,0,0\n"
               "12/f.png,0,0,10,10,1;2,8,0,0\n"
               "12/a.png,25,-3,10,8,,6,-0.5,0.9\n");
    const cumtl::data::Affectnet dataset(dir / "training.csv", dir / "images");
    REQUIRE(dataset.size() == 2);
    CHECK(dataset.skipped() == 5);
    CHECK(dataset.skipped(7) == 1);
    CHECK(dataset.skipped(8) == 2);
    CHECK(dataset.skipped(10) == 1);
    CHECK(dataset.labels(0).emotion == emotion_label("happiness").emotion);
    CHECK(dataset.labels(1).emotion == emotion_label("anger").emotion);

    const cumtl::data::Sample face = dataset.load(0);
    REQUIRE(face.image.height == 8);
    REQUIRE(face.image.width == 10);
    CHECK(face.image.pixels == cumtl::data::crop(photo, 4, 5, 8, 10).pixels);
    CHECK(face.domain == "affectnet");
    // A box over the image's edge is clipped: x 25..35 → 25..30, y −3..5 → 0..5.
    const cumtl::data::Sample clipped = dataset.load(1);
    CHECK(clipped.image.pixels == cumtl::data::crop(photo, 0, 25, 5, 5).pixels);

    const cumtl::data::Affectnet whole(dir / "training.csv", dir / "images", {.crop_face = false});
    CHECK(whole.load(0).image.pixels == photo.pixels);

    write_text(dir / "bad.csv",
               "subDirectory_filePath,face_x,face_y,face_width,face_height,expression\n"
               "12/a.png,5,4,10,8,11\n");
    CHECK_ERROR_WITH(cumtl::data::Affectnet(dir / "bad.csv", dir.path()), "bad.csv':2", "unknown expression '11'");
    write_text(dir / "bad.csv",
               "subDirectory_filePath,face_x,face_y,face_width,face_height,expression\n"
               "12/a.png,5,four,10,8,1\n");
    CHECK_ERROR_WITH(cumtl::data::Affectnet(dir / "bad.csv", dir.path()), "bad.csv':2", "face_y is 'four'");
    write_text(dir / "bad.csv",
               "subDirectory_filePath,face_x,face_y,face_width,face_height,expression\n"
               "12/a.png,50,40,10,8,1\n");
    CHECK_ERROR_WITH(cumtl::data::Affectnet(dir / "bad.csv", dir / "images").load(0), "a.png", "outside");
    write_text(dir / "bad.csv", "subDirectory_filePath,face_x,face_y,face_width,expression\n");
    CHECK_ERROR_WITH(cumtl::data::Affectnet(dir / "bad.csv", dir.path()), "bad.csv':1", "no 'face_height' column");
  }
}
