/* emulate.h -- the CUDA built-ins a fusegrad kernel uses, for running its CUDA C on the CPU.
 *
 * A testing aid (runtime/cuda/emulate.py): g++ compiles the generated source with this
 * header included first, and each launch runs the grid block after block. Within a
 * block, FG_EACH_THREAD { ... } (what every thread runs between two barriers) becomes a
 * loop over the block's threads, and FG_SYNC (a barrier) becomes nothing: a barrier
 * holds when each phase runs for all threads before the next phase starts. The renderer
 * keeps everything that crosses a barrier in shared memory, which is one static array
 * per kernel here, so this sequential schedule computes what the GPU computes.
 */
#ifndef FUSEGRAD_EMULATE_H
#define FUSEGRAD_EMULATE_H

#include <math.h>
#include <stdint.h>

struct fg_dim3 {
    unsigned int x, y, z;
};

/* One launch at a time (emulate.py holds a lock), so the built-ins can be globals. */
static fg_dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(threads)

#define FG_EACH_THREAD for (threadIdx.x = 0; threadIdx.x < blockDim.x; ++threadIdx.x)
#define FG_SYNC ((void)0)

#endif /* FUSEGRAD_EMULATE_H */
