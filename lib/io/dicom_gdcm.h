/* The C side of lib/io/dicom_gdcm.cpp, the library's only C++ outside CUDA: GDCM parses DICOM files and
 * decodes their pixel data (every transfer syntax GDCM knows); everything else (series grouping,
 * sorting, geometry, values) is C in lib/io/dicom.c. Nothing here throws: every function returns a
 * status and writes the reason into msg. Internal (SARCO_INTERNAL), never exported. */
#ifndef SARCO_DICOM_GDCM_H
#define SARCO_DICOM_GDCM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef SARCO_INTERNAL
#define SARCO_INTERNAL __attribute__((visibility("hidden")))
#endif

#define SARCO_DCM_UID 68  /* UI is at most 64 characters */
#define SARCO_DCM_TEXT 68 /* LO at most 64 */

/* What the reader needs from one file's header (everything before the pixel data). has_* say
 * whether the element was present and parsed; values are as stored (DICOM LPS, mm). */
typedef struct sarco_dcm_header {
    char series_uid[SARCO_DCM_UID];
    char series_description[SARCO_DCM_TEXT];
    char modality[20];
    char sop_class[SARCO_DCM_UID];
    char transfer_syntax[SARCO_DCM_UID];
    char photometric[20];
    int has_rows;                       /* Rows and Columns present */
    int64_t rows, cols, frames;         /* frames = NumberOfFrames, 1 when absent */
    int64_t spp, bits_allocated, bits_stored, high_bit, pixel_rep, planar;
    int has_position, has_orientation, has_pixel_spacing, has_rescale, has_tilt, has_thickness;
    double position[3];                 /* ImagePositionPatient */
    double orientation[6];              /* ImageOrientationPatient: row direction, column direction */
    double pixel_spacing[2];            /* PixelSpacing: row spacing, column spacing (mm) */
    double slope, intercept;            /* RescaleSlope/Intercept (1, 0 when absent) */
    double tilt;                        /* GantryDetectorTilt, degrees */
    double thickness;                   /* SliceThickness */
    /* Sequence of Ultrasound Regions: the 2D-tissue region chosen (largest), its physical deltas */
    int us_regions;                     /* items in the sequence */
    int has_us_spacing;                 /* a 2D region with both units in cm */
    double us_spacing[2];               /* row (PhysicalDeltaY), column (PhysicalDeltaX), mm */
    int64_t us_region_box[4];           /* x0, y0, x1, y1 of that region */
    int us_regions_disagree;            /* several 2D regions with different deltas */
    char us_units_note[96];             /* why regions gave no spacing, when they did not */
    int encapsulated;                   /* compressed pixel data (fragments) */
    int64_t native_avail;               /* native, not deflated: bytes the file holds after the pixel data's
                                           element header (-1 unknown); a shorter file is truncated */
} sarco_dcm_header;

enum { SARCO_DCM_OK = 0, SARCO_DCM_NOT_DICOM = 1, SARCO_DCM_BAD = 2, SARCO_DCM_UNSUPPORTED = 3, SARCO_DCM_NOMEM = 4 };

/* Reads the header of path (up to the pixel data). */
SARCO_INTERNAL int sarco_dcm_read_header(const char *path, sarco_dcm_header *h, char *msg, size_t msg_size);

/* Decoded pixel data of every frame: samples of bits_allocated (8, 16 or 32) bits, native byte
 * order, frame after frame; planar 0 = interleaved (R G B R G B), 1 = plane after plane per frame.
 * Palette colour comes back as RGB through the palette. photometric is what the samples are now
 * (a JPEG decoder may have turned YBR into RGB). data is malloc'd; free() it. */
typedef struct sarco_dcm_pixels {
    void *data;
    size_t bytes;
    int64_t rows, cols, frames, spp, bits_allocated, planar, pixel_rep;
    char photometric[20];
} sarco_dcm_pixels;

/* Decodes path's pixel data. max_bytes: refuse (SARCO_DCM_BAD with "past the cap") before decoding
 * anything larger. The result's dims are checked against h's (the file must not change between). */
SARCO_INTERNAL int sarco_dcm_decode(const char *path, const sarco_dcm_header *h, uint64_t max_bytes,
                                    sarco_dcm_pixels *out, char *msg, size_t msg_size);

#ifdef __cplusplus
}
#endif

#endif
