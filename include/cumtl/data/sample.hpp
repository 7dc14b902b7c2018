#pragma once
// What the data pipeline passes around: an 8-bit HWC image and its labels,
// any of which may be missing, with the label vocabularies every reader,
// the generator and the trainer share.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cumtl/core/error.hpp"

namespace cumtl::data {

// The 7 basic emotions, in cumtl's index order (dataset readers map their own codes to these).
inline constexpr std::array<std::string_view, 7> emotion_names{"neutral", "happiness", "sadness", "surprise",
                                                               "fear",    "disgust",   "anger"};

// The 11 compound expressions of RAF-DB, in the dataset's label order 1..11 (index = label − 1).
inline constexpr std::array<std::string_view, 11> compound_names{
    "happily_surprised", "happily_disgusted", "sadly_fearful",        "sadly_angry",
    "sadly_surprised",   "sadly_disgusted",   "fearfully_angry",      "fearfully_surprised",
    "angrily_surprised", "angrily_disgusted", "disgustedly_surprised"};

// Every Action Unit cumtl knows (FACS numbers), the order of Labels::aus.
inline constexpr std::array<int, 15> au_numbers{1, 2, 4, 5, 6, 7, 9, 12, 15, 17, 20, 23, 25, 26, 43};

// The EmotioNet challenge 2017 AUs: the default AU head.
inline constexpr std::array<int, 11> emotionet_challenge_aus{1, 2, 4, 5, 6, 9, 12, 17, 20, 25, 26};

// The index of AU `number` in au_numbers, or nothing.
inline std::optional<int> au_index(int number) {
  for (std::size_t i = 0; i < au_numbers.size(); ++i)
    if (au_numbers[i] == number) return int(i);
  return std::nullopt;
}

// The index of a name in a vocabulary, or nothing.
template <std::size_t N>
std::optional<int> index_of(const std::array<std::string_view, N>& names, std::string_view name) {
  for (std::size_t i = 0; i < N; ++i)
    if (names[i] == name) return int(i);
  return std::nullopt;
}

// An 8-bit image, rows of pixels of `channels` values (1 grey, 3 RGB): HWC.
struct Image {
  int height = 0, width = 0, channels = 0;
  std::vector<std::uint8_t> pixels;

  Image() = default;
  Image(int h, int w, int c) : height(h), width(w), channels(c), pixels(std::size_t(h) * w * c, 0) {}
  std::uint8_t* at(int y, int x) { return pixels.data() + (std::size_t(y) * width + x) * channels; }
  const std::uint8_t* at(int y, int x) const { return pixels.data() + (std::size_t(y) * width + x) * channels; }
};

// One label per AU of au_numbers, all missing.
inline constexpr std::array<std::int8_t, au_numbers.size()> all_aus_missing() {
  std::array<std::int8_t, au_numbers.size()> missing{};
  missing.fill(-1);
  return missing;
}

// Labels of one image; −1 marks a missing label, for an emotion, a compound
// expression or any single AU (1 present, 0 absent).
struct Labels {
  int emotion = -1;                                                    // index into emotion_names
  int compound = -1;                                                   // index into compound_names
  std::array<std::int8_t, au_numbers.size()> aus = all_aus_missing();  // in au_numbers order
};

struct Sample {
  std::string source;  // a file path, or a generator's "synth:<domain>:<index>"
  std::string domain;  // e.g. "emotionet", "rafdb", "test"
  Image image;
  Labels labels;
};

}  // namespace cumtl::data
