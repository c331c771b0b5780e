#include "nn/formats/pickle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pk_heap_free(PkHeap *h)
{
    for (int i = 0; i < h->n; i++) {
        free(h->all[i]->s);
        free(h->all[i]->items);
        free(h->all[i]);
    }
    free(h->all);
    memset(h, 0, sizeof *h);
}

static PkValue *pk_new(PkHeap *h, PkKind kind)
{
    if (h->n == h->cap) {
        int cap = h->cap ? h->cap * 2 : 256;
        PkValue **a = realloc(h->all, (size_t)cap * sizeof *a);
        if (!a) return NULL;
        h->all = a, h->cap = cap;
    }
    PkValue *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->kind = kind;
    h->all[h->n++] = v;
    return v;
}

static bool pk_push_item(PkValue *c, PkValue *item)
{
    if (c->n == c->cap) {
        int cap = c->cap ? c->cap * 2 : 8;
        PkValue **a = realloc(c->items, (size_t)cap * sizeof *a);
        if (!a) return false;
        c->items = a, c->cap = cap;
    }
    c->items[c->n++] = item;
    return true;
}

PkValue *pk_dict_get(const PkValue *d, const char *key)
{
    if (!d || d->kind != PK_DICT) return NULL;
    for (int i = 0; i + 1 < d->n; i += 2)
        if (d->items[i]->kind == PK_STR && !strcmp(d->items[i]->s, key)) return d->items[i + 1];
    return NULL;
}

typedef struct {
    const unsigned char *p, *end;
    PkHeap *heap;
    PkValue **stack;
    int sp, stack_cap;
    int *marks;
    int n_marks, marks_cap;
    PkValue **memo;
    int64_t memo_cap;
    const char *what;
    Error *err;
    bool failed;
} Vm;

static void *vm_fail(Vm *vm, const char *msg, int op)
{
    if (!vm->failed)
        error_set(vm->err, ERR_FORMAT, "%s: unsupported or corrupt pickle (%s, opcode 0x%02x)", vm->what,
                  msg, op);
    vm->failed = true;
    return NULL;
}

static const char *storage_dtype(const char *global);

/* The globals a checkpoint may name: the tensor and dict constructors, the storage types, and the
 * numpy scalars training scripts save beside the weights. Nothing is ever called; anything else is
 * refused by name, so a pickle that wants other code is reported, not half-read. */
static bool global_allowed(const char *name)
{
    static const char *const allowed[] = {
        "collections.OrderedDict", "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
        "numpy.core.multiarray.scalar", "numpy.dtype", "_codecs.encode", "torch.device"};
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        if (!strcmp(name, allowed[i])) return true;
    return !strncmp(name, "torch.", 6) && !strchr(name + 6, '.') && storage_dtype(name);
}

static PkValue *refuse_global(Vm *vm, const char *name, int op)
{
    if (!vm->failed)
        error_set(vm->err, ERR_FORMAT, "%s: the pickle names %.200s, which a weights file has no use for (refused; only "
                                       "tensors, dicts and storages are read)", vm->what, name);
    vm->failed = true;
    return NULL;
}

static bool push(Vm *vm, PkValue *v)
{
    if (!v) return false;
    if (vm->sp == vm->stack_cap) {
        int cap = vm->stack_cap ? vm->stack_cap * 2 : 64;
        PkValue **s = realloc(vm->stack, (size_t)cap * sizeof *s);
        if (!s) return false;
        vm->stack = s, vm->stack_cap = cap;
    }
    vm->stack[vm->sp++] = v;
    return true;
}

static PkValue *pop(Vm *vm)
{
    if (vm->sp <= (vm->n_marks ? vm->marks[vm->n_marks - 1] : 0)) return NULL;
    return vm->stack[--vm->sp];
}

static PkValue *top(Vm *vm) { return vm->sp > 0 ? vm->stack[vm->sp - 1] : NULL; }

static bool need(Vm *vm, size_t n) { return (size_t)(vm->end - vm->p) >= n; }

static uint64_t read_le(Vm *vm, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | vm->p[i];
    vm->p += n;
    return v;
}

static bool memo_put(Vm *vm, int64_t idx, PkValue *v)
{
    if (idx < 0 || idx > (1 << 24) || !v) return false;
    if (idx >= vm->memo_cap) {
        int64_t cap = vm->memo_cap ? vm->memo_cap : 64;
        while (cap <= idx) cap *= 2;
        PkValue **m = realloc(vm->memo, (size_t)cap * sizeof *m);
        if (!m) return false;
        memset(m + vm->memo_cap, 0, (size_t)(cap - vm->memo_cap) * sizeof *m);
        vm->memo = m, vm->memo_cap = cap;
    }
    vm->memo[idx] = v;
    return true;
}

static PkValue *make_str(Vm *vm, PkKind kind, size_t n)
{
    if (!need(vm, n)) return vm_fail(vm, "truncated string", 0);
    PkValue *v = pk_new(vm->heap, kind);
    if (!v) return NULL;
    v->s = malloc(n + 1);
    if (!v->s) return NULL;
    memcpy(v->s, vm->p, n);
    v->s[n] = 0;
    v->slen = n;
    vm->p += n;
    return v;
}

/* Items above the last mark, as a new container of `kind`. */
static PkValue *pop_to_mark(Vm *vm, PkKind kind)
{
    if (!vm->n_marks) return vm_fail(vm, "no mark", 0);
    int m = vm->marks[--vm->n_marks];
    PkValue *c = pk_new(vm->heap, kind);
    if (!c) return NULL;
    for (int i = m; i < vm->sp; i++)
        if (!pk_push_item(c, vm->stack[i])) return NULL;
    vm->sp = m;
    return c;
}

static const char *storage_dtype(const char *global)
{
    static const char *map[][2] = {{"FloatStorage", "F32"}, {"DoubleStorage", "F64"}, {"HalfStorage", "F16"},
                                   {"BFloat16Storage", "BF16"}, {"LongStorage", "I64"}, {"IntStorage", "I32"},
                                   {"ShortStorage", "I16"}, {"CharStorage", "I8"}, {"ByteStorage", "U8"},
                                   {"BoolStorage", "BOOL"}};
    const char *dot = strrchr(global, '.');
    const char *name = dot ? dot + 1 : global;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(name, map[i][0])) return map[i][1];
    return NULL;
}

/* ('storage', storage_type, key, location, numel[, view_metadata]) -> PK_STORAGE */
static PkValue *persistent_load(Vm *vm, PkValue *pid)
{
    if (pid->kind != PK_TUPLE || pid->n < 5 || pid->items[0]->kind != PK_STR ||
        strcmp(pid->items[0]->s, "storage") || pid->items[1]->kind != PK_GLOBAL)
        return vm_fail(vm, "persistent id is not a storage", 'Q');
    const char *dtype = storage_dtype(pid->items[1]->s);
    if (!dtype) return vm_fail(vm, "unknown storage type", 'Q');
    PkValue *key = pid->items[2];
    if (key->kind != PK_STR && key->kind != PK_INT) return vm_fail(vm, "bad storage key", 'Q');
    PkValue *s = pk_new(vm->heap, PK_STORAGE);
    if (!s) return NULL;
    char buf[32];
    if (key->kind == PK_INT) snprintf(buf, sizeof buf, "%lld", (long long)key->i);
    s->s = strdup(key->kind == PK_STR ? key->s : buf);
    snprintf(s->dtype, sizeof s->dtype, "%s", dtype);
    s->i = pid->items[4]->kind == PK_INT ? pid->items[4]->i : -1;
    return s;
}

static bool int_tuple(const PkValue *t, int64_t *out, int *n)
{
    if (t->kind != PK_TUPLE && t->kind != PK_LIST) return false;
    if (t->n > TENSOR_MAX_DIMS) return false;
    for (int i = 0; i < t->n; i++) {
        if (t->items[i]->kind != PK_INT) return false;
        out[i] = t->items[i]->i;
    }
    *n = t->n;
    return true;
}

static PkValue *reduce(Vm *vm, PkValue *fn, PkValue *args)
{
    if (fn->kind != PK_GLOBAL || args->kind != PK_TUPLE) return pk_new(vm->heap, PK_OBJECT);
    const char *name = fn->s;
    if (!strcmp(name, "torch._utils._rebuild_tensor_v2") || !strcmp(name, "torch._utils._rebuild_tensor")) {
        if (args->n < 4 || args->items[0]->kind != PK_STORAGE || args->items[1]->kind != PK_INT)
            return vm_fail(vm, "bad tensor rebuild arguments", 'R');
        PkValue *t = pk_new(vm->heap, PK_TENSOR);
        if (!t) return NULL;
        t->storage = args->items[0];
        t->offset = args->items[1]->i;
        int nd_shape, nd_stride;
        if (!int_tuple(args->items[2], t->shape, &nd_shape) || !int_tuple(args->items[3], t->stride, &nd_stride) ||
            nd_shape != nd_stride)
            return vm_fail(vm, "bad tensor size/stride", 'R');
        t->ndim = nd_shape;
        return t;
    }
    if (!strcmp(name, "torch._utils._rebuild_parameter") ||
        !strcmp(name, "torch._utils._rebuild_parameter_with_state"))
        return args->n >= 1 ? args->items[0] : vm_fail(vm, "bad parameter rebuild", 'R');
    if (!strcmp(name, "collections.OrderedDict")) return pk_new(vm->heap, PK_DICT);
    return pk_new(vm->heap, PK_OBJECT);
}

static bool set_items(Vm *vm, PkValue *dict, PkValue **kv, int n)
{
    if (dict->kind != PK_DICT) return true; /* attributes of opaque objects: ignored */
    for (int i = 0; i + 1 < n; i += 2) {
        if (!pk_push_item(dict, kv[i]) || !pk_push_item(dict, kv[i + 1])) return false;
    }
    return true;
}

PkValue *pickle_load(const unsigned char *buf, size_t len, size_t *consumed, PkHeap *heap,
                     const char *what, Error *err)
{
    Vm vm = {buf, buf + len, heap, NULL, 0, 0, NULL, 0, 0, NULL, 0, what, err, false};
    PkValue *result = NULL;
    while (!vm.failed) {
        if (!need(&vm, 1)) {
            vm_fail(&vm, "truncated", 0);
            break;
        }
        int op = *vm.p++;
        PkValue *v = NULL, *a, *b;
        bool ok = true;
        switch (op) {
        case 0x80: /* PROTO */
            if (!need(&vm, 1)) goto truncated;
            vm.p++;
            break;
        case 0x95: /* FRAME */
            if (!need(&vm, 8)) goto truncated;
            vm.p += 8;
            break;
        case '.': /* STOP */
            result = pop(&vm);
            if (!result) vm_fail(&vm, "empty stack at STOP", op);
            goto done;
        case '(':
            if (vm.n_marks == vm.marks_cap) {
                int cap = vm.marks_cap ? vm.marks_cap * 2 : 16;
                int *m = realloc(vm.marks, (size_t)cap * sizeof *m);
                if (!m) goto oom;
                vm.marks = m, vm.marks_cap = cap;
            }
            vm.marks[vm.n_marks++] = vm.sp;
            break;
        case '}': ok = push(&vm, pk_new(heap, PK_DICT)); break;
        case ']': ok = push(&vm, pk_new(heap, PK_LIST)); break;
        case ')': ok = push(&vm, pk_new(heap, PK_TUPLE)); break;
        case 0x8f: ok = push(&vm, pk_new(heap, PK_LIST)); break; /* EMPTY_SET */
        case 'N': ok = push(&vm, pk_new(heap, PK_NONE)); break;
        case 0x88:
        case 0x89:
            v = pk_new(heap, PK_BOOL);
            if (v) v->i = op == 0x88;
            ok = push(&vm, v);
            break;
        case 'J':
            if (!need(&vm, 4)) goto truncated;
            v = pk_new(heap, PK_INT);
            if (v) v->i = (int32_t)read_le(&vm, 4);
            ok = push(&vm, v);
            break;
        case 'K':
            if (!need(&vm, 1)) goto truncated;
            v = pk_new(heap, PK_INT);
            if (v) v->i = (int64_t)read_le(&vm, 1);
            ok = push(&vm, v);
            break;
        case 'M':
            if (!need(&vm, 2)) goto truncated;
            v = pk_new(heap, PK_INT);
            if (v) v->i = (int64_t)read_le(&vm, 2);
            ok = push(&vm, v);
            break;
        case 0x8a: /* LONG1 */
        case 0x8b: { /* LONG4 */
            int nb = op == 0x8a ? 1 : 4;
            if (!need(&vm, (size_t)nb)) goto truncated;
            uint64_t n = read_le(&vm, nb);
            if (!need(&vm, n)) goto truncated;
            v = pk_new(heap, PK_INT);
            if (!v) goto oom;
            /* Values wider than 64 bits (the legacy magic number) are kept truncated: only
             * compared, never used as sizes. */
            uint64_t x = 0;
            for (uint64_t k = 0; k < n && k < 8; k++) x |= (uint64_t)vm.p[k] << (8 * k);
            if (n > 0 && n < 8 && (vm.p[n - 1] & 0x80)) x |= ~(uint64_t)0 << (8 * n);
            v->i = (int64_t)x;
            vm.p += n;
            ok = push(&vm, v);
            break;
        }
        case 'G': {
            if (!need(&vm, 8)) goto truncated;
            uint64_t u = 0;
            for (int k = 0; k < 8; k++) u = u << 8 | vm.p[k];
            vm.p += 8;
            v = pk_new(heap, PK_FLOAT);
            if (v) memcpy(&v->f, &u, 8);
            ok = push(&vm, v);
            break;
        }
        case 'X': /* BINUNICODE */
        case 'T': /* BINSTRING */
        case 'B': /* BINBYTES */
            if (!need(&vm, 4)) goto truncated;
            ok = push(&vm, make_str(&vm, op == 'B' ? PK_BYTES : PK_STR, (size_t)read_le(&vm, 4)));
            break;
        case 0x8c: /* SHORT_BINUNICODE */
        case 'U':  /* SHORT_BINSTRING */
        case 'C':  /* SHORT_BINBYTES */
            if (!need(&vm, 1)) goto truncated;
            ok = push(&vm, make_str(&vm, op == 'C' ? PK_BYTES : PK_STR, (size_t)read_le(&vm, 1)));
            break;
        case 0x8d: /* BINUNICODE8 */
        case 0x8e: /* BINBYTES8 */
            if (!need(&vm, 8)) goto truncated;
            ok = push(&vm, make_str(&vm, op == 0x8e ? PK_BYTES : PK_STR, (size_t)read_le(&vm, 8)));
            break;
        case 'c': { /* GLOBAL module\nname\n */
            const unsigned char *nl1 = memchr(vm.p, '\n', (size_t)(vm.end - vm.p));
            const unsigned char *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(vm.end - nl1 - 1)) : NULL;
            if (!nl2) goto truncated;
            v = pk_new(heap, PK_GLOBAL);
            if (!v) goto oom;
            size_t n1 = (size_t)(nl1 - vm.p), n2 = (size_t)(nl2 - nl1 - 1);
            v->s = malloc(n1 + n2 + 2);
            if (!v->s) goto oom;
            memcpy(v->s, vm.p, n1);
            v->s[n1] = '.';
            memcpy(v->s + n1 + 1, nl1 + 1, n2);
            v->s[n1 + 1 + n2] = 0;
            vm.p = nl2 + 1;
            if (!global_allowed(v->s)) {
                refuse_global(&vm, v->s, op);
                break;
            }
            ok = push(&vm, v);
            break;
        }
        case 0x93: /* STACK_GLOBAL */
            b = pop(&vm), a = pop(&vm);
            if (!a || !b || a->kind != PK_STR || b->kind != PK_STR) {
                vm_fail(&vm, "bad STACK_GLOBAL", op);
                break;
            }
            v = pk_new(heap, PK_GLOBAL);
            if (!v) goto oom;
            v->s = malloc(a->slen + b->slen + 2);
            if (!v->s) goto oom;
            sprintf(v->s, "%s.%s", a->s, b->s);
            if (!global_allowed(v->s)) {
                refuse_global(&vm, v->s, op);
                break;
            }
            ok = push(&vm, v);
            break;
        case 'q': /* BINPUT */
        case 'r': { /* LONG_BINPUT */
            int nb = op == 'q' ? 1 : 4;
            if (!need(&vm, (size_t)nb)) goto truncated;
            int64_t idx = (int64_t)read_le(&vm, nb);
            /* a corrupt index is the file's fault, not a lack of memory */
            if (idx > (1 << 24) || !top(&vm)) {
                vm_fail(&vm, idx > (1 << 24) ? "memo index out of range" : "memo of an empty stack", op);
                break;
            }
            ok = memo_put(&vm, idx, top(&vm));
            break;
        }
        case 0x94: /* MEMOIZE */
        {
            int64_t idx = 0;
            while (idx < vm.memo_cap && vm.memo[idx]) idx++;
            ok = memo_put(&vm, idx, top(&vm));
            break;
        }
        case 'h': /* BINGET */
        case 'j': { /* LONG_BINGET */
            int nb = op == 'h' ? 1 : 4;
            if (!need(&vm, (size_t)nb)) goto truncated;
            int64_t idx = (int64_t)read_le(&vm, nb);
            if (idx >= vm.memo_cap || !vm.memo[idx]) {
                vm_fail(&vm, "memo index not set", op);
                break;
            }
            ok = push(&vm, vm.memo[idx]);
            break;
        }
        case 't': ok = push(&vm, pop_to_mark(&vm, PK_TUPLE)); break;
        case 'l': ok = push(&vm, pop_to_mark(&vm, PK_LIST)); break;
        case 'd': { /* DICT from mark */
            PkValue *items = pop_to_mark(&vm, PK_TUPLE);
            v = pk_new(heap, PK_DICT);
            if (!items || !v) goto oom;
            ok = set_items(&vm, v, items->items, items->n) && push(&vm, v);
            break;
        }
        case 0x85:
        case 0x86:
        case 0x87: {
            int n = op - 0x84;
            if (vm.sp < n) {
                vm_fail(&vm, "stack underflow", op);
                break;
            }
            v = pk_new(heap, PK_TUPLE);
            if (!v) goto oom;
            for (int k = vm.sp - n; k < vm.sp; k++)
                if (!pk_push_item(v, vm.stack[k])) goto oom;
            vm.sp -= n;
            ok = push(&vm, v);
            break;
        }
        case 'Q': /* BINPERSID */
            a = pop(&vm);
            if (!a) {
                vm_fail(&vm, "stack underflow", op);
                break;
            }
            v = persistent_load(&vm, a);
            if (v) ok = push(&vm, v);
            break;
        case 'R': /* REDUCE */
            b = pop(&vm), a = pop(&vm);
            if (!a || !b) {
                vm_fail(&vm, "stack underflow", op);
                break;
            }
            v = reduce(&vm, a, b);
            if (v) ok = push(&vm, v);
            break;
        case 0x81: /* NEWOBJ */
            b = pop(&vm), a = pop(&vm);
            if (!a || !b) {
                vm_fail(&vm, "stack underflow", op);
                break;
            }
            ok = push(&vm, pk_new(heap, PK_OBJECT));
            break;
        case 'b': /* BUILD: state is dropped, the object stays */
            if (!pop(&vm) || !top(&vm)) vm_fail(&vm, "stack underflow", op);
            break;
        case 's': /* SETITEM */
            b = pop(&vm), a = pop(&vm);
            if (!a || !b || !top(&vm)) {
                vm_fail(&vm, "stack underflow", op);
                break;
            }
            {
                PkValue *kv[2] = {a, b};
                ok = set_items(&vm, top(&vm), kv, 2);
            }
            break;
        case 'u': { /* SETITEMS */
            PkValue *items = pop_to_mark(&vm, PK_TUPLE);
            if (!items || !top(&vm)) {
                vm_fail(&vm, "bad SETITEMS", op);
                break;
            }
            ok = set_items(&vm, top(&vm), items->items, items->n);
            break;
        }
        case 'a': /* APPEND */
            a = pop(&vm);
            if (!a || !top(&vm)) {
                vm_fail(&vm, "stack underflow", op);
                break;
            }
            if (top(&vm)->kind == PK_LIST) ok = pk_push_item(top(&vm), a);
            break;
        case 'e': /* APPENDS */
        case 0x90: { /* ADDITEMS */
            PkValue *items = pop_to_mark(&vm, PK_TUPLE);
            if (!items || !top(&vm)) {
                vm_fail(&vm, "bad APPENDS", op);
                break;
            }
            if (top(&vm)->kind == PK_LIST)
                for (int k = 0; k < items->n && ok; k++) ok = pk_push_item(top(&vm), items->items[k]);
            break;
        }
        case '0': /* POP */
            if (!pop(&vm)) vm_fail(&vm, "stack underflow", op);
            break;
        case '1': /* POP_MARK */
            if (!vm.n_marks) vm_fail(&vm, "no mark", op);
            else vm.sp = vm.marks[--vm.n_marks];
            break;
        case '2': /* DUP */
            ok = push(&vm, top(&vm));
            break;
        default:
            vm_fail(&vm, "unknown opcode", op);
        }
        if (!ok && !vm.failed) goto oom;
        continue;
    truncated:
        vm_fail(&vm, "truncated", op);
        continue;
    oom:
        if (!vm.failed) error_set(err, ERR_OOM, "%s: out of memory unpickling", what);
        vm.failed = true;
    }
done:
    if (consumed) *consumed = (size_t)(vm.p - buf);
    free(vm.stack);
    free(vm.marks);
    free(vm.memo);
    return vm.failed ? NULL : result;
}
