// Tensor core: strides of new tensors and views, view/reshape/permute checks, the thread pool
// (every thread runs, barriers order phases, exceptions come back to the caller), and the graph
// allocator (intermediates are freed after their last use; the buffer is reused across computes).
#include <atomic>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "check.h"
#include "ggmlpy/error.h"
#include "ggmlpy/graph.h"
#include "ggmlpy/ops.h"
#include "ggmlpy/threadpool.h"

using namespace ggmlpy;

static void test_tensor() {
    Context ctx;
    Tensor* a = ctx.new_tensor(DType::F32, {5, 3, 2});
    CHECK(a->ne[0] == 5 && a->ne[1] == 3 && a->ne[2] == 2 && a->ne[3] == 1);
    CHECK(a->nb[0] == 4 && a->nb[1] == 20 && a->nb[2] == 60 && a->nb[3] == 120);
    CHECK(a->is_contiguous() && a->nbytes() == 120 && a->nrows() == 6 && a->n_dims() == 3);
    Tensor* q = ctx.new_tensor(DType::Q8_0, {64, 2});
    CHECK(q->nb[1] == 68 && q->nbytes() == 136);
    CHECK_THROWS(ctx.new_tensor(DType::Q8_0, {33}), ValueError);
    CHECK_THROWS(ctx.new_tensor(DType::F32, {-1}), ValueError);

    Tensor* t = transpose(ctx, a);
    CHECK(t->ne[0] == 3 && t->ne[1] == 5 && t->nb[0] == 20 && t->nb[1] == 4);
    CHECK(!t->is_contiguous() && t->view_src == a);
    Tensor* p = permute(ctx, a, 0, 2, 1, 3);  // [5, 2, 3]
    CHECK(p->ne[1] == 2 && p->ne[2] == 3 && p->nb[1] == 60 && p->nb[2] == 20);
    CHECK_THROWS(permute(ctx, a, 0, 0, 1, 2), ValueError);
    CHECK_THROWS(reshape(ctx, t, {15}), ValueError);     // not contiguous
    CHECK_THROWS(reshape(ctx, a, {7, 4}), ValueError);   // wrong count
    Tensor* r = reshape(ctx, a, {15, 2});
    CHECK(r->nb[1] == 60 && r->data == nullptr && r->view_src == a);
    Tensor* v = view_2d(ctx, a, 2, 3, a->nb[1], 4);
    CHECK(v->view_offs == 4);
    Tensor* vv = view_1d(ctx, v, 2, 8);  // view of a view points at the base
    CHECK(vv->view_src == a && vv->view_offs == 12);
    CHECK_THROWS(view_1d(ctx, a, 30, 4), ValueError);    // past the end
}

static void test_pool() {
    ThreadPool pool(2);
    for (int nth : {1, 2, 3, 4}) {
        std::vector<int> hit(nth, 0);
        std::atomic<int> phase1{0};
        std::atomic<int> bad{0};
        for (int rep = 0; rep < 50; ++rep) {
            phase1 = 0;
            pool.run(nth, [&](int ith, int n) {
                hit[ith]++;
                phase1.fetch_add(1);
                pool.barrier();
                if (phase1.load() != n) bad++;  // everyone passed phase 1 before anyone left the barrier
                pool.barrier();
                if (ith == 0) phase1 = 0;
                pool.barrier();
                if (phase1.load() != 0) bad++;
            });
        }
        for (int i = 0; i < nth; ++i) CHECK(hit[i] == 50);
        CHECK(bad.load() == 0);
    }
    bool caught = false;
    try {
        pool.run(2, [&](int ith, int) { if (ith == 1) throw ValueError("boom"); });
    } catch (const ValueError& e) {
        caught = std::strcmp(e.what(), "boom") == 0;
    }
    CHECK(caught);
    caught = false;
    try {  // thread 1 throws before a barrier thread 0 waits in: no hang
        pool.run(2, [&](int ith, int) {
            if (ith == 1) throw ValueError("late");
            pool.barrier();
            pool.barrier();
        });
    } catch (const ValueError&) {
        caught = true;
    }
    CHECK(caught);
    int after = 0;
    pool.run(2, [&](int ith, int) { if (ith == 0) after = 1; });
    CHECK(after == 1);  // the pool still works after an exception
}

static void test_allocator() {
    // chain of 20 adds on a [1024] row: with freeing, peak is a few rows, not 20
    Context ctx;
    Tensor* x = ctx.new_tensor(DType::F32, {1024});
    Tensor* one = ctx.new_tensor(DType::F32, {1});
    for (int i = 0; i < 1024; ++i) x->ptr<float>()[i] = (float)i;
    one->ptr<float>()[0] = 1.0f;
    Context gctx(false);
    Tensor* cur = x;
    Tensor* mid = nullptr;
    for (int i = 0; i < 20; ++i) {
        cur = add(gctx, cur, one);
        if (i == 9) mid = cur;
    }
    Tensor* v = view_1d(gctx, mid, 4, 0);  // a view consumed at the very end keeps mid alive
    Tensor* out = add(gctx, cur, v);      // v broadcasts over cur
    Graph g;
    build_forward(g, out);
    ThreadPool pool(2);
    for (int nth : {1, 2}) {
        compute(g, pool, nth);
        const size_t peak = pool.buffer().peak_activation_bytes();
        CHECK(peak <= 4 * 4096);
        CHECK(peak >= 2 * 4096);
        for (int i = 0; i < 1024; ++i) CHECK_NEAR(out->ptr<float>()[i], (i + 20.0f) + (i % 4 + 10.0f), 0.0);
    }
    const size_t cap = pool.buffer().capacity();
    compute(g, pool, 2);
    CHECK(pool.buffer().capacity() == cap);
    // a leaf with no data is reported, not dereferenced
    Context nctx(false);
    Tensor* nd = nctx.new_tensor(DType::F32, {4});
    Graph g2;
    build_forward(g2, scale(nctx, nd, 2.0f));
    CHECK_THROWS(compute(g2, pool, 2), ValueError);
}

int main() {
    test_tensor();
    test_pool();
    test_allocator();
    return test_exit_code("test_core");
}
