#include "tensor/device.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#ifndef HAVE_CUDA
static ErrorCode no_cuda(Error *err)
{
    return error_set(err, ERR_DEVICE, "this build has no CUDA support (rebuild with nvcc, CUDA=1)");
}
ErrorCode cuda_alloc(void **ptr, size_t bytes, Error *err)
{
    (void)ptr, (void)bytes;
    return no_cuda(err);
}
void cuda_free(void *ptr) { (void)ptr; }
ErrorCode cuda_memset_zero(void *ptr, size_t bytes, Error *err)
{
    (void)ptr, (void)bytes;
    return no_cuda(err);
}
ErrorCode cuda_memcpy(void *dst, int dst_on_device, const void *src, int src_on_device,
                      size_t bytes, Error *err)
{
    (void)dst, (void)dst_on_device, (void)src, (void)src_on_device, (void)bytes;
    return no_cuda(err);
}
int cuda_device_count(void) { return 0; }
void *cuda_host_alloc(size_t bytes)
{
    (void)bytes;
    return NULL;
}
int cuda_host_free(void *ptr)
{
    (void)ptr;
    return 0;
}
#endif

/* A host buffer of a huge page or more starts on a 2 MiB boundary, and its whole huge pages are advised as
 * transparent huge pages (Linux's usual THP mode, "madvise", gives them only to advised memory; elsewhere the
 * advice changes nothing). The kernels read the step's tensors in many strided streams at once (a GEMM's B
 * in place, kc rows a plane apart; a tile's C rows; the Winograd transforms' tile rows), each on its own
 * 4 KiB page, more pages than the first-level TLB holds, while one 2 MiB page covers 512 of them. Only whole
 * huge pages inside the buffer are advised, so it never becomes resident past what it touches. Training
 * layers alone, each graph's memory either way in one process, medians of alternated pairs, 2 threads,
 * Zen 4, time with 4 KiB pages over time with huge ones (forward, backward): ResNet-50's 64->256 1x1 at
 * 210x210 with residual 1.02, 1.09; 256->64 1.02, 1.04; 128x128 3x3 stride 2 at 210x210 1.00, 1.08;
 * 64x64 3x3 at 210x210 1.03, 1.03; MobileNet's depthwise 64 at 160x160 (batch 8) 1.06, 1.17; 16->32 1x1
 * at 160x160 1.04, 1.11. Peak RSS unchanged (ResNet-50 2705 MB, MobileNet 759 MB). */
enum { HUGE_PAGE_BYTES = 2 << 20 };

static void *host_alloc_large_pages(size_t bytes)
{
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < HUGE_PAGE_BYTES) return aligned_alloc(64, rounded ? rounded : 64);
    size_t whole = (rounded + HUGE_PAGE_BYTES - 1) / HUGE_PAGE_BYTES * HUGE_PAGE_BYTES;
    void *p = aligned_alloc(HUGE_PAGE_BYTES, whole);
#ifdef MADV_HUGEPAGE
    if (p) (void)madvise(p, rounded / HUGE_PAGE_BYTES * HUGE_PAGE_BYTES, MADV_HUGEPAGE); /* advice: may be refused */
#endif
    return p;
}

void *host_alloc_pinned(size_t bytes)
{
    void *p = cuda_host_alloc(bytes);
    if (p) return p;
    return host_alloc_large_pages(bytes);
}

void host_free_pinned(void *ptr)
{
    if (ptr && !cuda_host_free(ptr)) free(ptr);
}

ErrorCode device_alloc(void **ptr, Device dev, size_t bytes, Error *err)
{
    *ptr = NULL;
    if (dev == DEVICE_CUDA) return cuda_alloc(ptr, bytes, err);
    *ptr = host_alloc_large_pages(bytes);
    if (!*ptr) return error_set(err, ERR_OOM, "out of host memory allocating %zu bytes", bytes);
    return ERR_OK;
}

void device_free(void *ptr, Device dev)
{
    if (!ptr) return;
    if (dev == DEVICE_CUDA)
        cuda_free(ptr);
    else
        free(ptr);
}

ErrorCode device_memset_zero(void *ptr, Device dev, size_t bytes, Error *err)
{
    if (dev == DEVICE_CUDA) return cuda_memset_zero(ptr, bytes, err);
    memset(ptr, 0, bytes);
    return ERR_OK;
}

ErrorCode device_memcpy(void *dst, Device dst_dev, const void *src, Device src_dev, size_t bytes,
                        Error *err)
{
    if (dst_dev == DEVICE_CPU && src_dev == DEVICE_CPU) {
        if (bytes) memmove(dst, src, bytes);
        return ERR_OK;
    }
    return cuda_memcpy(dst, dst_dev == DEVICE_CUDA, src, src_dev == DEVICE_CUDA, bytes, err);
}

int device_cuda_count(void) { return cuda_device_count(); }
