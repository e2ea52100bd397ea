// Debian's libopenblas-dev puts cblas.h under the multiarch include path.
#include <cblas.h>
// Not in every cblas.h; OpenBLAS exports both.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
