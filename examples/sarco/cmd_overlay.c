/* sarco overlay: an image with its labels as a PNG picture (docs/report.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_pictures.h"

static const char *OVERLAY_USAGE =
    "usage: sarco overlay --image I --labels L --out O.png [options]\n"
    "\n"
    "Draws the image windowed to grey with its label map in fixed colours (translucent fill and outline,\n"
    "or outline only) and a legend. A 3D image gives a mosaic of evenly spaced axial slices through the\n"
    "labelled extent plus one coronal view; pixels are square in mm (the voxel aspect ratio is kept).\n"
    "\n"
    "  --image I            NIfTI or PNG image (CT in HU, ultrasound 0..255)\n"
    "  --labels L           label map on the same grid (optional: without it, the image alone)\n"
    "  --out O.png          the PNG to write (atomically)\n"
    "  --names a,b,c        class names, label 0 first (default: the --model config's, else 'label N')\n"
    "  --model M            take the class names from this model file's config\n"
    CLI_OVERLAY_OPTIONS_HELP
    "\n"
    "Exit codes: 0 ok, 2 bad input or usage, 1 internal failure.\n";

int cmd_overlay(int argc, char **argv) {
    const char *verb = "overlay", *ipath = NULL, *lpath = NULL, *out = NULL, *names_arg = NULL, *mpath = NULL;
    sarco_overlay_options oo;
    sarco_overlay_options_init(&oo);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(OVERLAY_USAGE, stdout);
            return CLI_OK;
        }
        int t = cli_overlay_option(verb, argc, argv, &i, &oo);
        if (t < 0) return CLI_BAD_INPUT;
        if (t) continue;
        const char **slot = !strcmp(a, "--image") ? &ipath : !strcmp(a, "--labels") ? &lpath
                            : !strcmp(a, "--out") ? &out : !strcmp(a, "--names") ? &names_arg
                            : !strcmp(a, "--model") ? &mpath : NULL;
        if (!slot || i + 1 >= argc) return cli_unknown_option(verb, a, OVERLAY_USAGE);
        *slot = argv[++i];
    }
    if (!ipath || !out) {
        fprintf(stderr, "sarco overlay: --image and --out are required\n\n%s", OVERLAY_USAGE);
        return CLI_BAD_INPUT;
    }
    char msg[1024];
    sarco_context *ctx = NULL;
    sarco_status s = cli_cpu_context(0, &ctx, msg, sizeof msg);
    if (s != SARCO_OK) return cli_fail(verb, s, msg);
    sarco_image *img = NULL, *lgeom = NULL;
    uint16_t *labels = NULL;
    sarco_model *model = NULL;
    char **names = NULL;
    size_t nnames = 0;
    int rc = CLI_OK;
    if ((s = sarco_image_read(ctx, ipath, &img)) != SARCO_OK) goto fail;
    if (lpath) {
        if ((s = sarco_labels_read(ctx, lpath, &labels, &lgeom)) != SARCO_OK) goto fail;
        if (!cli_same_grid(ipath, img, lpath, lgeom, msg, sizeof msg)) {
            rc = cli_fail(verb, SARCO_ERR_INVALID_ARGUMENT, msg);
            goto done;
        }
    }
    if (names_arg) {
        names = cli_split_names(names_arg, &nnames);
    } else if (mpath) {
        if ((s = sarco_model_load(ctx, mpath, &model)) != SARCO_OK) goto fail;
        names = cli_class_names(sarco_model_config_json(model), &nnames);
    }
    oo.class_names = (const char *const *)names;
    oo.nclass_names = nnames;
    if ((s = sarco_overlay_write(ctx, img, labels, &oo, out)) != SARCO_OK) goto fail;
    goto done;
fail:
    rc = cli_fail(verb, s, sarco_last_error(ctx));
done:
    cli_names_free(names, nnames);
    sarco_model_free(model);
    sarco_labels_free(labels);
    sarco_image_free(lgeom);
    sarco_image_free(img);
    sarco_context_free(ctx);
    return rc;
}
