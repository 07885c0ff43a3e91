/*
 * fusegrad_binder.c -- fusegrad.runtime._binder: a kernel call from Python in C.
 *
 * A Binder is made once per compiled kernel from a compact description (see
 * runtime/binder.py, `native_binder`):
 *
 *     Binder(packed_address, params, outputs, checks, entry_dims, structure, fail, owner)
 *
 *   params      one (type_num, axes) per parameter; axes: one (kind, value) per
 *               axis: (BIND, k) binds dim slot k, (SAME, k) must equal slot k,
 *               (CONST, c) must equal c
 *   outputs     one (type_num, axes) per output; axes are (SAME, k) or (CONST, c)
 *   checks      (relation, left, right): left == right (EQ) or left >= right (GE),
 *               each side (SAME, k) or (CONST, c)
 *   entry_dims  the slot of each dim argument of the entry point, in order
 *   structure   the result: an output index, or a tuple of structures
 *   fail        fail(status) raises the error of a nonzero status
 *   owner       kept alive with the binder (the JIT engine owning the code)
 *
 * Calling it with the arguments checks that each is exactly an ndarray of the
 * parameter's dtype (native byte order), rank and C order, whose size-1 axes are
 * the parameter's constant-1 axes (a BIND axis is never 1: the specialization
 * traced every size-1 axis as the constant 1); binds the dims and checks the
 * equalities and the checks; allocates the outputs; calls
 *
 *     int packed(const int64_t *dims, void *const *buffers)
 *
 * with the GIL released; and returns the result, 0-d outputs as NumPy scalars.
 * When anything does not match it returns NotImplemented and raises nothing: the
 * Python caller then converts the arguments or names the mismatch.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <stddef.h>
#include <stdint.h>

#include "fusegrad_rt.h" /* FG_LARGE_BLOCK (the runtime itself is reached through addresses) */

enum { AXIS_BIND = 0, AXIS_SAME = 1, AXIS_CONST = 2 };
enum { CHECK_EQ = 0, CHECK_GE = 1 };

/* Kernels beyond these limits keep the Python caller (the constructor refuses them). */
#define FG_MAX_SLOTS 64
#define FG_MAX_BUFFERS 128
#define FG_MAX_RANK 32
#define FG_MAX_CHECKS 64

typedef int (*fg_packed_entry)(const int64_t *dims, void *const *buffers);
typedef void *(*fg_alloc_fn)(int64_t nbytes);
typedef void (*fg_free_fn)(void *block);

typedef struct {
    int kind;
    int64_t value;
} Axis;

typedef struct {
    int type_num;
    int rank;
    Axis axes[FG_MAX_RANK];
} Slot;

typedef struct {
    int relation;
    Axis left, right;
} Check;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    fg_packed_entry entry;
    Py_ssize_t n_params, n_outputs, n_checks, n_entry_dims;
    Slot *slots; /* n_params parameters, then n_outputs outputs */
    Check checks[FG_MAX_CHECKS];
    Py_ssize_t entry_dims[FG_MAX_SLOTS];
    PyObject *structure;
    PyObject *fail;
    PyObject *owner;
    fg_alloc_fn alloc; /* the runtime's allocator for large outputs, or NULL */
    fg_free_fn free;
    unsigned long long calls; /* calls completed by the binder */
} Binder;

/* -- construction ------------------------------------------------------------------ */

/* One (kind, value) pair; BIND only where `may_bind` (it marks the slot in `bound`). */
static int parse_axis(PyObject *item, Axis *a, int may_bind, int *bound)
{
    long long value;
    if (!PyTuple_Check(item) || !PyArg_ParseTuple(item, "iL", &a->kind, &value)) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "Binder: an axis is a (kind, value) tuple");
        }
        return -1;
    }
    a->value = value;
    if (a->kind == AXIS_CONST) {
        if (value < 0) {
            PyErr_SetString(PyExc_ValueError, "Binder: negative constant dim");
            return -1;
        }
        return 0;
    }
    if ((a->kind != AXIS_BIND && a->kind != AXIS_SAME) || value < 0 || value >= FG_MAX_SLOTS
        || (!may_bind && a->kind == AXIS_BIND)) {
        PyErr_SetString(PyExc_ValueError, "Binder: invalid axis");
        return -1;
    }
    if (a->kind == AXIS_BIND) {
        if (bound[value]) {
            PyErr_SetString(PyExc_ValueError, "Binder: a dim slot is bound twice");
            return -1;
        }
        bound[value] = 1;
    } else if (!bound[value]) {
        PyErr_SetString(PyExc_ValueError, "Binder: a dim slot is used before it is bound");
        return -1;
    }
    return 0;
}

static int parse_slot(PyObject *item, Slot *slot, int may_bind, int *bound)
{
    PyObject *axes;
    Py_ssize_t axis;
    if (!PyTuple_Check(item) || !PyArg_ParseTuple(item, "iO!", &slot->type_num, &PyTuple_Type, &axes)) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "Binder: a buffer is a (type_num, axes) tuple");
        }
        return -1;
    }
    if (PyTuple_GET_SIZE(axes) > FG_MAX_RANK) {
        PyErr_SetString(PyExc_ValueError, "Binder: rank too large");
        return -1;
    }
    slot->rank = (int)PyTuple_GET_SIZE(axes);
    for (axis = 0; axis < slot->rank; axis++) {
        if (parse_axis(PyTuple_GET_ITEM(axes, axis), &slot->axes[axis], may_bind, bound) < 0) {
            return -1;
        }
    }
    return 0;
}

static int parse_check(PyObject *item, Check *check, int *bound)
{
    PyObject *left, *right;
    if (!PyTuple_Check(item) || !PyArg_ParseTuple(item, "iOO", &check->relation, &left, &right)) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "Binder: a check is a (relation, left, right) tuple");
        }
        return -1;
    }
    if (check->relation != CHECK_EQ && check->relation != CHECK_GE) {
        PyErr_SetString(PyExc_ValueError, "Binder: invalid relation");
        return -1;
    }
    if (parse_axis(left, &check->left, 0, bound) < 0 || parse_axis(right, &check->right, 0, bound) < 0) {
        return -1;
    }
    return 0;
}

static int check_structure(PyObject *structure, Py_ssize_t n_outputs, int depth)
{
    Py_ssize_t k;
    if (depth > 64) {
        PyErr_SetString(PyExc_ValueError, "Binder: structure nested too deeply");
        return -1;
    }
    if (PyLong_CheckExact(structure)) {
        Py_ssize_t index = PyLong_AsSsize_t(structure);
        if (index == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (index < 0 || index >= n_outputs) {
            PyErr_SetString(PyExc_ValueError, "Binder: structure names no output");
            return -1;
        }
        return 0;
    }
    if (!PyTuple_CheckExact(structure)) {
        PyErr_SetString(PyExc_TypeError, "Binder: structure must be an int or a tuple");
        return -1;
    }
    for (k = 0; k < PyTuple_GET_SIZE(structure); k++) {
        if (check_structure(PyTuple_GET_ITEM(structure, k), n_outputs, depth + 1) < 0) {
            return -1;
        }
    }
    return 0;
}

/* -- large outputs ------------------------------------------------------------------ */

static void free_output_block(PyObject *capsule)
{
    void *block = PyCapsule_GetPointer(capsule, "fusegrad.output");
    fg_free_fn release_block = (fg_free_fn)(uintptr_t)PyCapsule_GetContext(capsule);
    if (block != NULL && release_block != NULL) {
        release_block(block);
    }
}

/* A new C-contiguous array for an output. From FG_LARGE_BLOCK bytes on, its memory
 * comes from the runtime's fg_alloc and goes back to fg_free when the array dies
 * (a capsule is its base): a thread keeps a few freed large blocks for its next call,
 * so an output of 80 MB returned in a loop does not page-fault its memory in (and
 * have the kernel zero it) on every call, as fresh memory from the system would: the
 * W2 chain at n = 10^7 spent 6 of its 25 ms there. Smaller outputs: np.empty. */
static PyObject *large_output(Binder *self, const Slot *out, npy_intp *shape)
{
    /* the element sizes of the dtypes kernels use (float64, float32, bool); 0: others */
    npy_intp nbytes = out->type_num == NPY_DOUBLE ? 8
                      : out->type_num == NPY_FLOAT ? 4
                      : out->type_num == NPY_BOOL  ? 1 : 0;
    PyObject *array, *capsule;
    void *block;
    int axis;

    for (axis = 0; axis < out->rank; axis++) {
        if (shape[axis] != 0 && nbytes > NPY_MAX_INTP / shape[axis]) {
            nbytes = 0; /* overflows: NumPy reports it */
            break;
        }
        nbytes *= shape[axis];
    }
    if (self->alloc == NULL || nbytes < FG_LARGE_BLOCK) {
        return PyArray_SimpleNew(out->rank, shape, out->type_num);
    }
    block = self->alloc((int64_t)nbytes);
    if (block == NULL) {
        return PyArray_SimpleNew(out->rank, shape, out->type_num);
    }
    capsule = PyCapsule_New(block, "fusegrad.output", free_output_block);
    if (capsule == NULL) {
        self->free(block);
        return NULL;
    }
    if (PyCapsule_SetContext(capsule, (void *)(uintptr_t)self->free) < 0) {
        Py_DECREF(capsule); /* no context yet: its destructor frees nothing */
        self->free(block);
        return NULL;
    }
    array = PyArray_SimpleNewFromData(out->rank, shape, out->type_num, block);
    if (array == NULL) {
        Py_DECREF(capsule); /* frees the block */
        return NULL;
    }
    if (PyArray_SetBaseObject((PyArrayObject *)array, capsule) < 0) { /* steals capsule */
        Py_DECREF(array);
        return NULL;
    }
    return array;
}

static PyObject *binder_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                                   PyObject *kwnames);

static PyObject *binder_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"packed_address", "params", "outputs", "checks", "entry_dims",
                               "structure", "fail", "owner", "alloc_address", "free_address",
                               NULL};
    unsigned long long address, alloc_address = 0, free_address = 0;
    PyObject *params, *outputs, *checks, *entry_dims, *structure, *fail, *owner;
    int bound[FG_MAX_SLOTS] = {0};
    Py_ssize_t n_params, n_outputs, k;
    Binder *self;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "KO!O!O!O!OOO|KK", keywords, &address,
                                     &PyTuple_Type, &params, &PyTuple_Type, &outputs,
                                     &PyTuple_Type, &checks, &PyTuple_Type, &entry_dims,
                                     &structure, &fail, &owner, &alloc_address,
                                     &free_address)) {
        return NULL;
    }
    n_params = PyTuple_GET_SIZE(params);
    n_outputs = PyTuple_GET_SIZE(outputs);
    if (address == 0 || n_params + n_outputs > FG_MAX_BUFFERS
        || PyTuple_GET_SIZE(checks) > FG_MAX_CHECKS || PyTuple_GET_SIZE(entry_dims) > FG_MAX_SLOTS) {
        PyErr_SetString(PyExc_ValueError, "Binder: no entry point, or too many arguments");
        return NULL;
    }
    if (!PyCallable_Check(fail) || check_structure(structure, n_outputs, 0) < 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "Binder: fail must be callable");
        }
        return NULL;
    }
    self = (Binder *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = binder_vectorcall;
    self->entry = (fg_packed_entry)(uintptr_t)address;
    if (alloc_address != 0 && free_address != 0) {
        self->alloc = (fg_alloc_fn)(uintptr_t)alloc_address;
        self->free = (fg_free_fn)(uintptr_t)free_address;
    }
    self->n_params = n_params;
    self->n_outputs = n_outputs;
    self->n_checks = PyTuple_GET_SIZE(checks);
    self->n_entry_dims = PyTuple_GET_SIZE(entry_dims);
    self->slots = PyMem_Calloc((size_t)(n_params + n_outputs) + 1, sizeof(Slot));
    if (self->slots == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    for (k = 0; k < n_params + n_outputs; k++) {
        PyObject *item = k < n_params ? PyTuple_GET_ITEM(params, k)
                                      : PyTuple_GET_ITEM(outputs, k - n_params);
        if (parse_slot(item, &self->slots[k], k < n_params, bound) < 0) {
            Py_DECREF(self);
            return NULL;
        }
    }
    for (k = 0; k < self->n_checks; k++) {
        if (parse_check(PyTuple_GET_ITEM(checks, k), &self->checks[k], bound) < 0) {
            Py_DECREF(self);
            return NULL;
        }
    }
    for (k = 0; k < self->n_entry_dims; k++) {
        Py_ssize_t slot = PyLong_AsSsize_t(PyTuple_GET_ITEM(entry_dims, k));
        if (slot == -1 && PyErr_Occurred()) {
            Py_DECREF(self);
            return NULL;
        }
        if (slot < 0 || slot >= FG_MAX_SLOTS || !bound[slot]) {
            PyErr_SetString(PyExc_ValueError, "Binder: an entry dim is not bound");
            Py_DECREF(self);
            return NULL;
        }
        self->entry_dims[k] = slot;
    }
    Py_INCREF(structure);
    self->structure = structure;
    Py_INCREF(fail);
    self->fail = fail;
    Py_INCREF(owner);
    self->owner = owner;
    return (PyObject *)self;
}

static int binder_traverse(Binder *self, visitproc visit, void *arg)
{
    Py_VISIT(self->structure);
    Py_VISIT(self->fail);
    Py_VISIT(self->owner);
    return 0;
}

static int binder_clear(Binder *self)
{
    Py_CLEAR(self->structure);
    Py_CLEAR(self->fail);
    Py_CLEAR(self->owner);
    return 0;
}

static void binder_dealloc(Binder *self)
{
    PyObject_GC_UnTrack(self);
    binder_clear(self);
    PyMem_Free(self->slots);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* -- calling ----------------------------------------------------------------------- */

/* The result for `structure`, taking a new reference to each leaf it names. */
static PyObject *build_result(PyObject *structure, PyObject **leaves)
{
    Py_ssize_t k, n;
    PyObject *tuple;
    if (PyLong_CheckExact(structure)) {
        PyObject *leaf = leaves[PyLong_AsSsize_t(structure)];
        Py_INCREF(leaf);
        return leaf;
    }
    n = PyTuple_GET_SIZE(structure);
    tuple = PyTuple_New(n);
    if (tuple == NULL) {
        return NULL;
    }
    for (k = 0; k < n; k++) {
        PyObject *item = build_result(PyTuple_GET_ITEM(structure, k), leaves);
        if (item == NULL) {
            Py_DECREF(tuple);
            return NULL;
        }
        PyTuple_SET_ITEM(tuple, k, item);
    }
    return tuple;
}

static void release(PyObject **objects, Py_ssize_t count)
{
    Py_ssize_t k;
    for (k = 0; k < count; k++) {
        Py_XDECREF(objects[k]);
    }
}

/* 1 when the arguments fit the parameters (their dims then in `dims`, data in `buffers`). */
static int bind_arguments(const Binder *self, PyObject *const *args, int64_t *dims,
                          void **buffers)
{
    Py_ssize_t k;
    int axis;
    for (k = 0; k < self->n_params; k++) {
        const Slot *param = &self->slots[k];
        PyArrayObject *array;
        PyArray_Descr *descr;
        const npy_intp *shape;
        if (Py_TYPE(args[k]) != &PyArray_Type) {
            return 0;
        }
        array = (PyArrayObject *)args[k];
        descr = PyArray_DESCR(array);
        if (descr->type_num != param->type_num || !PyArray_ISNBO(descr->byteorder)
            || !PyArray_IS_C_CONTIGUOUS(array) || PyArray_NDIM(array) != param->rank) {
            return 0;
        }
        shape = PyArray_DIMS(array);
        for (axis = 0; axis < param->rank; axis++) {
            const Axis *a = &param->axes[axis];
            int64_t size = (int64_t)shape[axis];
            if (a->kind == AXIS_BIND) {
                if (size == 1) {
                    return 0; /* another specialization */
                }
                dims[a->value] = size;
            } else if (size != (a->kind == AXIS_SAME ? dims[a->value] : a->value)) {
                return 0;
            }
        }
        buffers[k] = PyArray_DATA(array);
    }
    for (k = 0; k < self->n_checks; k++) {
        const Check *check = &self->checks[k];
        int64_t left = check->left.kind == AXIS_SAME ? dims[check->left.value] : check->left.value;
        int64_t right =
            check->right.kind == AXIS_SAME ? dims[check->right.value] : check->right.value;
        if (check->relation == CHECK_EQ ? left != right : left < right) {
            return 0;
        }
    }
    return 1;
}

static PyObject *binder_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                                   PyObject *kwnames)
{
    Binder *self = (Binder *)callable;
    int64_t dims[FG_MAX_SLOTS];
    int64_t entry_dims[FG_MAX_SLOTS];
    void *buffers[FG_MAX_BUFFERS];
    PyObject *outputs[FG_MAX_BUFFERS];
    npy_intp shape[FG_MAX_RANK];
    PyObject *result;
    Py_ssize_t k;
    int axis, status;

    if (PyVectorcall_NARGS(nargsf) != self->n_params
        || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0)
        || !bind_arguments(self, args, dims, buffers)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    for (k = 0; k < self->n_outputs; k++) {
        const Slot *out = &self->slots[self->n_params + k];
        for (axis = 0; axis < out->rank; axis++) {
            const Axis *a = &out->axes[axis];
            shape[axis] = (npy_intp)(a->kind == AXIS_SAME ? dims[a->value] : a->value);
        }
        outputs[k] = large_output(self, out, shape);
        if (outputs[k] == NULL) {
            /* np.empty in the Python caller raises the same error, with NumPy's message */
            PyErr_Clear();
            release(outputs, k);
            Py_RETURN_NOTIMPLEMENTED;
        }
        buffers[self->n_params + k] = PyArray_DATA((PyArrayObject *)outputs[k]);
    }
    for (k = 0; k < self->n_entry_dims; k++) {
        entry_dims[k] = dims[self->entry_dims[k]];
    }

    Py_BEGIN_ALLOW_THREADS
    status = self->entry(entry_dims, buffers);
    Py_END_ALLOW_THREADS

    if (status != 0) {
        PyObject *returned = PyObject_CallFunction(self->fail, "i", status);
        release(outputs, self->n_outputs);
        if (returned != NULL) {
            Py_DECREF(returned);
            PyErr_Format(PyExc_SystemError, "kernel status %d raised no error", status);
        }
        return NULL;
    }
    for (k = 0; k < self->n_outputs; k++) {
        if (self->slots[self->n_params + k].rank == 0) {
            /* o[()]: the NumPy scalar (steals the array) */
            outputs[k] = PyArray_Return((PyArrayObject *)outputs[k]);
            if (outputs[k] == NULL) {
                release(outputs, self->n_outputs);
                return NULL;
            }
        }
    }
    result = build_result(self->structure, outputs);
    release(outputs, self->n_outputs);
    if (result != NULL) {
        self->calls++;
    }
    return result;
}

static PyObject *binder_get_calls(Binder *self, void *closure)
{
    (void)closure;
    return PyLong_FromUnsignedLongLong(self->calls);
}

static PyGetSetDef binder_getset[] = {
    {"calls", (getter)binder_get_calls, NULL, "calls the binder completed", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject BinderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fusegrad.runtime._binder.Binder",
    .tp_doc = "Checks arguments, allocates outputs and calls a kernel's packed entry point "
              "(NotImplemented when the arguments do not fit).",
    .tp_basicsize = sizeof(Binder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = binder_new,
    .tp_dealloc = (destructor)binder_dealloc,
    .tp_traverse = (traverseproc)binder_traverse,
    .tp_clear = (inquiry)binder_clear,
    .tp_vectorcall_offset = offsetof(Binder, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_getset = binder_getset,
};

static struct PyModuleDef binder_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_binder",
    .m_doc = "Kernel calls from Python, in C (see Binder).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__binder(void)
{
    PyObject *module;
    import_array();
    if (PyType_Ready(&BinderType) < 0) {
        return NULL;
    }
    module = PyModule_Create(&binder_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&BinderType);
    if (PyModule_AddObject(module, "Binder", (PyObject *)&BinderType) < 0
        || PyModule_AddIntConstant(module, "AXIS_BIND", AXIS_BIND) < 0
        || PyModule_AddIntConstant(module, "AXIS_SAME", AXIS_SAME) < 0
        || PyModule_AddIntConstant(module, "AXIS_CONST", AXIS_CONST) < 0
        || PyModule_AddIntConstant(module, "CHECK_EQ", CHECK_EQ) < 0
        || PyModule_AddIntConstant(module, "CHECK_GE", CHECK_GE) < 0
        || PyModule_AddIntConstant(module, "MAX_CHECKS", FG_MAX_CHECKS) < 0
        || PyModule_AddIntConstant(module, "MAX_SLOTS", FG_MAX_SLOTS) < 0
        || PyModule_AddIntConstant(module, "MAX_BUFFERS", FG_MAX_BUFFERS) < 0
        || PyModule_AddIntConstant(module, "MAX_RANK", FG_MAX_RANK) < 0) {
        Py_DECREF(&BinderType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
