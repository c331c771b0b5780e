/* onnx_export in builds without protobuf-c or the ONNX schema (see the Makefile's ONNX switch). */
#include "nn/formats/onnx_export.h"

int onnx_export_available(void) { return 0; }

ErrorCode onnx_export(const Graph *g, const OnnxExportSpec *spec, uint8_t **bytes, size_t *len, Error *err)
{
    (void)g, (void)spec;
    *bytes = NULL, *len = 0;
    return error_set(err, ERR_UNSUPPORTED,
                     "this build has no ONNX export: install protobuf-c-compiler, libprotobuf-c-dev and libonnx-dev "
                     "(make deps) and rebuild");
}
