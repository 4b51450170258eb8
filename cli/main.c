/* otalab: entry point and subcommand dispatch. Subcommands not linked into this
 * build (weak symbol absent) are reported as such. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define CLI_COMMANDS(X)                                                        \
  X(plan)                                                                      \
  X(inspect)                                                                   \
  X(mkfixtures)                                                                \
  X(mkapp)                                                                     \
  X(keys)                                                                      \
  X(flash)                                                                     \
  X(devices)                                                                   \
  X(device)                                                                    \
  X(events)                                                                    \
  X(products)                                                                  \
  X(scenario)

#define CLI_DECL(n) extern const cli_cmd_t cli_cmd_##n __attribute__((weak));
CLI_COMMANDS(CLI_DECL)
#undef CLI_DECL

static const cli_cmd_t *const commands[] = {
#define CLI_REF(n) &cli_cmd_##n,
    CLI_COMMANDS(CLI_REF)
#undef CLI_REF
};

static void usage(FILE *out) {
  fprintf(out, "usage: otalab COMMAND [ARGS...]\n\n"
               "A local cloud emulator for Particle Electron OTA updates.\n\n"
               "commands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (commands[i])
      fprintf(out, "  %-12s %s\n", commands[i]->name, commands[i]->summary);
  fprintf(out, "\n`otalab COMMAND --help` for a command's options.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return CLI_EXIT_USAGE;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
      !strcmp(argv[1], "help")) {
    usage(stdout);
    return CLI_EXIT_OK;
  }
  if (!strcmp(argv[1], "--version")) {
    printf("otalab 0.1.0\n");
    return CLI_EXIT_OK;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (commands[i] && !strcmp(commands[i]->name, argv[1]))
      return commands[i]->run(argc - 1, argv + 1);
  fprintf(stderr, "otalab: unknown command '%s' (see otalab --help)\n", argv[1]);
  return CLI_EXIT_USAGE;
}
