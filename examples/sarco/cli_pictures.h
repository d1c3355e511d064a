/* What the picture/report verbs share: class names from a model config, overlay options from argv. */
#ifndef SARCO_CLI_PICTURES_H
#define SARCO_CLI_PICTURES_H

#include "cli.h"

/* The config's "classes" (label 0 first) as a NULL-padded array of n strings (free with
 * cli_names_free); NULL with *n = 0 when the config has none. */
char **cli_class_names(const char *config_json, size_t *n);
/* "a,b,c" split at commas; NULL with *n = 0 for an empty string. */
char **cli_split_names(const char *list, size_t *n);
void cli_names_free(char **names, size_t n);

/* Takes an overlay option at argv[*i] (--window W L, --outline, --alpha A, --slices N, --pixel-mm D,
 * --orientation auto|stored|radiological, --no-legend), moving *i past its values. Returns 1 when
 * taken, 0 when not an overlay option, -1 after printing why the value is bad. */
int cli_overlay_option(const char *verb, int argc, char **argv, int *i, sarco_overlay_options *o);
#define CLI_OVERLAY_OPTIONS_HELP                                                                            \
    "  --window W L         grey window width and level (default: CT W400 L40; 0..255 for 8-bit images)\n" \
    "  --outline            outlines only (default: translucent fill with outlines)\n"                     \
    "  --alpha A            fill opacity in [0, 1] (default 0.4)\n"                                       \
    "  --slices N           axial panels of a 3D mosaic, 1..64 (default 8)\n"                             \
    "  --pixel-mm D         output pixel size in mm (default: automatic)\n"                                \
    "  --orientation O      auto (default), stored or radiological\n"                                      \
    "  --no-legend          leave the legend out\n"

#endif
