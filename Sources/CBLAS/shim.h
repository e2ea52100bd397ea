// Debian's libopenblas-dev puts cblas.h under the multiarch include path.
#include <cblas.h>
// Not in every cblas.h; OpenBLAS exports both.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
// LAPACK's symmetric eigensolver (Fortran calling convention; OpenBLAS bundles LAPACK), for
// fitting the token memory's key projection.
void ssyev_(const char *jobz, const char *uplo, const int *n, float *a, const int *lda, float *w,
            float *work, const int *lwork, int *info);
