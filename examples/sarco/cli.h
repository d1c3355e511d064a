/* The sarco CLI: one file per verb (cmd_<verb>.c), composed only from the public header. */
#ifndef SARCO_CLI_H
#define SARCO_CLI_H

#include <stdio.h>

#include "sarco/sarco.h"

/* Exit codes: 0 ok, 1 internal failure, 2 bad input or usage. */
enum { CLI_OK = 0, CLI_INTERNAL = 1, CLI_BAD_INPUT = 2 };

typedef struct cli_verb {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the verb */
} cli_verb;

/* Maps a library status to the CLI's exit code. */
int cli_exit_code(sarco_status s);
/* Prints "sarco <verb>: <status>: <message>" on stderr and returns the exit code. */
int cli_fail(const char *verb, sarco_status s, const char *msg);

int cmd_version(int argc, char **argv);

#endif
