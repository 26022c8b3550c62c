import CBLAS

/// Row-major sgemm: C[M][N] = alpha * op(A) * op(B) + beta * C.
/// `transA`: A is stored [K][M] (use Aᵀ); `transB`: B is stored [N][K] (use Bᵀ).
@inline(__always)
func gemm(
    transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    guard m > 0, n > 0 else { return }
    if k == 0 {
        // BLAS would leave C untouched for k == 0 only if beta == 1; make beta == 0 explicit.
        if beta == 0 { for r in 0..<m { (c + r * ldc).update(repeating: 0, count: n) } }
        return
    }
    cblas_sgemm(
        CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
        Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// y[N] = sum over the M rows of A[M][N] (+ y if accumulate): bias gradients.
@inline(__always)
func columnSums(_ a: UnsafePointer<Float>, rows: Int, cols: Int, ones: UnsafePointer<Float>,
                into y: UnsafeMutablePointer<Float>, accumulate: Bool) {
    cblas_sgemv(CblasRowMajor, CblasTrans, Int32(rows), Int32(cols), 1, a, Int32(cols), ones, 1,
                accumulate ? 1 : 0, y, 1)
}

/// OpenBLAS's own threads do not help the 16-64-row GEMMs of this model and fight our two
/// trainer threads for the two cores; parallelism comes from splitting the batch instead.
public func useSingleThreadedBLAS() {
    openblas_set_num_threads(1)
}
