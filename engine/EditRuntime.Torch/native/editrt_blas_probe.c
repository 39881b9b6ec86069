// editrt-blas-probe: prints the kernel family OpenBLAS picks on this CPU by its own detection
// (openblas_get_corename), e.g. "Haswell", or "Prescott" when it does not recognise the CPU and
// falls back to its SSE3 kernels. Run by the Torch backend before it loads libtorch (and with it
// OpenBLAS, which reads OPENBLAS_CORETYPE only once, when it loads), so that it overrides the
// family only on that fallback. Exit 0 and one line on stdout; 2 = no OpenBLAS found.
#include <dlfcn.h>
#include <stdio.h>

int main(void) {
    const char* libs[] = {"libopenblas.so.0", "libblas.so.3"};
    for (int i = 0; i < 2; i++) {
        void* h = dlopen(libs[i], RTLD_NOW | RTLD_LOCAL);
        if (h == NULL) continue;
        char* (*corename)(void) = (char* (*)(void))dlsym(h, "openblas_get_corename");
        if (corename == NULL) continue;  // a BLAS that is not OpenBLAS
        puts(corename());
        return 0;
    }
    return 2;
}
