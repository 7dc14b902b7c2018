#pragma once
// What every cumtl program does with its command line: --help prints the help
// and exits 0; a usage error prints the error and the usage and exits 2. And
// how the programs that run networks set up the C library's allocator.
#include <CLI/CLI.hpp>

#include <cstdlib>
#include <iostream>
#include <optional>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

// A training step frees and allocates the same hundred-odd megabytes of
// activations every time. By default glibc maps a large block afresh on each
// allocation and hands free memory at the top of the heap back to the system,
// so each CPU step page-faulted its activations in again and zeroed them in
// the kernel: a tenth of a step's time on 2 cores (the compact model, batch
// 64). Blocks up to 32 MiB (glibc's largest threshold) now come from the heap,
// and freed memory stays there for the next step.
inline void keep_freed_memory_for_reuse() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

// The exit status when the program must stop here, or nothing to go on.
inline std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& success) {
    return app.exit(success);
  } catch (const CLI::ParseError& error) {
    std::cerr << app.get_name() << ": " << error.what() << "\n\n" << app.help();
    return 2;
  }
  return std::nullopt;
}
