/* The sarco CLI: one file per verb (cmd_<verb>.c), composed only from the public header. */
#ifndef SARCO_CLI_H
#define SARCO_CLI_H

#include <jansson.h>
#include <stdint.h>
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

/* ---- shared by the measuring verbs (cli.c) ---- */

/* The options evaluate and measure share. */
typedef struct cli_common {
    const char *report; /* --report R.json; NULL: stdout */
    double spacing[3];  /* --spacing X,Y[,Z] in mm, file order */
    int nsp;            /* how many --spacing values; 0: the file's */
    int threads;        /* --threads N; 0: all */
} cli_common;

/* Takes argv[*i] when it is --help/-h, or --report, --spacing or --threads with a value (moving *i
 * past it). Returns 1 when it took it, 0 when it is none of them, and -1 when the verb must return
 * *rc now (the usage printed for --help, or a bad value reported). */
int cli_common_option(const char *verb, const char *usage, int argc, char **argv, int *i, cli_common *c, int *rc);
/* "sarco <verb>: unknown or incomplete option '<arg>'" and the usage on stderr; returns CLI_BAD_INPUT. */
int cli_unknown_option(const char *verb, const char *arg, const char *usage);
/* "X,Y[,Z]" of positive finite mm values: returns how many (up to 3), 0 when malformed. */
int cli_parse_spacing(const char *s, double *sp);
/* "fp32", "bf16", "tf32", "fp16" -> *p; 0 when s is none of them. */
int cli_parse_precision(const char *s, sarco_precision *p);
/* A CPU context with that many threads; on failure the reason is in msg. */
sarco_status cli_cpu_context(int threads, sarco_context **ctx, char *msg, size_t n);

/* A label map's grid in the measurement API's order (C order: {nz, ny, nx} or {ny, nx}, spacing
 * alike); a 3D file holding one slice counts as 2D. cell: |det| of the affine's voxel block (mm^3 or
 * mm^2), or the product of the --spacing values when they override the file's. */
typedef struct cli_grid {
    int ndim;
    int64_t dims[3];
    double spacing[3];
    double cell;
} cli_grid;

/* Fills g from an image's geometry; spo (x, y[, z] mm, nsp values) replaces the file's spacing.
 * Returns 1, or 0 with the reason in why. */
int cli_make_grid(const sarco_image *img, const double *spo, int nsp, cli_grid *g, char *why, size_t n);
/* 1 when a (file pa) and b (file pb) have the same dims and affine (to 1e-3 relative); else 0 with
 * the message naming both in msg. */
int cli_same_grid(const char *pa, const sarco_image *a, const char *pb, const sarco_image *b, char *msg, size_t n);

/* A JSON number, or null for NaN and infinities. */
json_t *cli_jreal(double v);
/* Sets obj's "dims" and "spacing_mm" in file order (x, y[, z]), the --spacing values when nsp > 0. */
void cli_json_geometry(json_t *obj, const sarco_image *img, const double *spo, int nsp);
/* One label's ultrasound measures as the "ultrasound" JSON object of `sarco measure` (docs/measure.md);
 * for any verb that reports them. */
json_t *cli_us_json(const sarco_us_measure *u);
/* Reads an image for a verb's --input/--image: sarco_image_read, or with series (--series UID, may be
 * NULL) sarco_image_read_series, which picks one series of a DICOM folder. */
sarco_status cli_image_read(sarco_context *ctx, const char *path, const char *series, sarco_image **img);
/* What a DICOM read used, for the reports: series UID and description, modality, slices, frames, the
 * spacing used and where it came from, the slice gap; NULL for non-DICOM images. Never patient data. */
json_t *cli_dicom_json(const sarco_image *img);
/* Writes root as indented JSON to report (NULL: stdout); returns the exit code. */
int cli_write_json(const char *verb, const json_t *root, const char *report);

/* The JSON report of `sarco segment` for one case (cmd_segment.c), for any verb that segments: t holds
 * the seconds of {load, measure and write, total}. */
void cli_segment_report(FILE *f, const char *model_path, const sarco_model *model, const char *input,
                        const char *output, const sarco_image *ct, sarco_context *ctx, const sarco_segment_info *info,
                        const sarco_volume_report *vr, const double *t, sarco_precision precision);

#endif
