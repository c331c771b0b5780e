/* An application of libretina through its public header only: detects the faces of a JPEG with the
 * built-in model and prints one line per face. Build it against an installed copy:
 *   make install PREFIX=$HOME/.local
 *   cc apps/example/detect_faces.c $(PKG_CONFIG_PATH=$HOME/.local/lib/pkgconfig pkg-config --cflags --libs retina) \
 *      -ljpeg -o detect_faces
 * (libjpeg here only reads the file: the library itself takes pixel buffers.) */
#include <stdio.h>
#include <stdlib.h>

#include <jpeglib.h> /* after stdio.h: it uses FILE and size_t */
#include <retina.h>

/* The JPEG's pixels, RGB, rows of 3 * width bytes (no error recovery: an example, not a tool). */
static unsigned char *read_jpeg(const char *path, int *width, int *height)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr jerr;
    cinfo.err = jpeg_std_error(&jerr);
    jpeg_create_decompress(&cinfo);
    jpeg_stdio_src(&cinfo, f);
    jpeg_read_header(&cinfo, TRUE);
    cinfo.out_color_space = JCS_RGB;
    jpeg_start_decompress(&cinfo);
    *width = (int)cinfo.output_width, *height = (int)cinfo.output_height;
    unsigned char *px = malloc((size_t)*width * *height * 3);
    while (px && cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = px + (size_t)cinfo.output_scanline * *width * 3;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    fclose(f);
    return px;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s IMAGE.jpg\n", argv[0]);
        return 2;
    }
    int w, h;
    unsigned char *px = read_jpeg(argv[1], &w, &h);
    if (!px) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 1;
    }
    char err[256];
    retina_detector *d = retina_create(NULL, NULL, NULL, err, sizeof err); /* built-in model, defaults */
    if (!d) {
        fprintf(stderr, "retina_create: %s\n", err);
        return 1;
    }
    retina_face *faces;
    int n;
    if (retina_detect(d, px, w, h, 3 * w, RETINA_RGB, &faces, &n, err, sizeof err)) {
        fprintf(stderr, "retina_detect: %s\n", err);
        return 1;
    }
    printf("libretina %s: %d faces\n", retina_version(), n);
    for (int i = 0; i < n; i++)
        printf("%.4f %.1f %.1f %.1f %.1f\n", faces[i].score, faces[i].box[0], faces[i].box[1], faces[i].box[2],
               faces[i].box[3]);
    retina_free_faces(faces);
    retina_destroy(d);
    free(px);
    return 0;
}
