#pragma once
// A training run small enough for a unit test, shared by the CPU and GPU suites.
#include <cumtl/train/config.hpp>

namespace cumtl_test {

// 16-px faces, widths of 8, 6 batches of 16 an epoch, 3 epochs, on the CPU.
inline cumtl::train::TrainConfig tiny_train_config() {
  cumtl::train::TrainConfig c;
  c.synth_train = 48;
  c.synth_test = 32;
  c.model = "small";
  c.widths = {8, 8, 8, 8};
  c.image_size = 16;
  c.batch = 16;
  c.epochs = 3;
  c.loader_threads = 1;
  c.device = "cpu";
  return c;
}

}  // namespace cumtl_test
