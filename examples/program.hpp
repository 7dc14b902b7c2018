#pragma once
// What every cumtl program does with its command line: --help prints the help
// and exits 0; a usage error prints the error and the usage and exits 2.
#include <CLI/CLI.hpp>

#include <iostream>
#include <optional>

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
