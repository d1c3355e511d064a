/* The built-in architectures. Adding a model: write lib/nn/<model>.c defining a sarco_arch and list it here. */
#include <stdio.h>
#include <string.h>

#include "arch.h"

extern const sarco_arch sarco_arch_unetr;           /* unetr.c */
extern const sarco_arch sarco_arch_nnunet_plain;    /* nnunet.c */
extern const sarco_arch sarco_arch_nnunet_resenc;   /* nnunet.c */
extern const sarco_arch sarco_arch_resnet50;        /* resnet.c */
extern const sarco_arch sarco_arch_vgg19;           /* vgg.c */
extern const sarco_arch sarco_arch_vgg19_bn;        /* vgg.c */
extern const sarco_arch sarco_arch_densenet121;     /* densenet.c */
extern const sarco_arch sarco_arch_efficientnet_b0; /* efficientnet.c */
extern const sarco_arch sarco_arch_convnext_tiny;    /* convnext.c */
extern const sarco_arch sarco_arch_swin_t;           /* swin.c */

static const sarco_arch *const archs[] = {
    &sarco_arch_unetr,
    &sarco_arch_nnunet_plain,
    &sarco_arch_nnunet_resenc,
    &sarco_arch_resnet50,
    &sarco_arch_vgg19,
    &sarco_arch_vgg19_bn,
    &sarco_arch_densenet121,
    &sarco_arch_efficientnet_b0,
    &sarco_arch_convnext_tiny,
    &sarco_arch_swin_t,
    NULL, /* end */
};

const sarco_arch *sarco_arch_find(const char *name) {
    for (size_t i = 0; archs[i]; i++)
        if (strcmp(archs[i]->name, name) == 0) return archs[i];
    return NULL;
}

void sarco_arch_names(char *buf, size_t n) {
    size_t used = 0;
    if (n) buf[0] = '\0';
    for (size_t i = 0; archs[i] && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%s", i ? ", " : "", archs[i]->name);
}
