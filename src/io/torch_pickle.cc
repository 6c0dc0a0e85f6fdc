#include "io/torch_pickle.h"

#include <zip.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <new>
#include <set>
#include <unordered_map>

#include "io/half.h"
#include "util/error.h"

namespace bertune::io {
namespace fs = std::filesystem;

namespace {

// ------------------------------------------------------------ pickle values

struct Obj;
using ObjPtr = std::shared_ptr<Obj>;

// Just enough of Python's object model for a state_dict. Containers hold
// shared pointers because the memo hands out the same object again.
struct Obj {
  enum class Kind { None, Bool, Int, Float, Str, Tuple, List, Dict, Global, Storage, Tensor };
  Kind kind = Kind::None;
  int64_t i = 0;                // Bool, Int; Storage: numel
  double f = 0;                 // Float
  std::string s;                // Str; Global: "module.name"; Storage: type name
  std::string key;              // Storage: data/<key>
  std::vector<ObjPtr> items;    // Tuple, List; Dict: key, value, key, value, ...
  ObjPtr storage;               // Tensor
  int64_t offset = 0;           // Tensor
  std::vector<int64_t> shape, stride;  // Tensor

  Obj() = default;
  Obj(const Obj&) = delete;
  Obj& operator=(const Obj&) = delete;
  // A hostile pickle can nest lists a million deep (by appending to memoised
  // containers); releasing children through a worklist instead of recursion
  // keeps that from overflowing the stack.
  ~Obj() {
    std::vector<ObjPtr> work = std::move(items);
    if (storage) work.push_back(std::move(storage));
    while (!work.empty()) {
      ObjPtr o = std::move(work.back());
      work.pop_back();
      if (o.use_count() == 1) {
        for (auto& child : o->items) work.push_back(std::move(child));
        o->items.clear();
        if (o->storage) work.push_back(std::move(o->storage));
      }
    }
  }
};

const char* kind_name(Obj::Kind k) {
  switch (k) {
    case Obj::Kind::None: return "None";
    case Obj::Kind::Bool: return "bool";
    case Obj::Kind::Int: return "int";
    case Obj::Kind::Float: return "float";
    case Obj::Kind::Str: return "str";
    case Obj::Kind::Tuple: return "tuple";
    case Obj::Kind::List: return "list";
    case Obj::Kind::Dict: return "dict";
    case Obj::Kind::Global: return "global";
    case Obj::Kind::Storage: return "storage";
    case Obj::Kind::Tensor: return "tensor";
  }
  return "?";
}

ObjPtr make(Obj::Kind kind) {
  auto o = std::make_shared<Obj>();
  o->kind = kind;
  return o;
}

// Stack and memo sizes are bounded by the pickle's length (each opcode adds at
// most one entry), and data.pkl itself is bounded when read from the zip.
constexpr uint64_t kMaxPickleBytes = 256ull << 20;

class PickleMachine {
 public:
  PickleMachine(std::string_view bytes, std::string where) : in_(bytes), where_(std::move(where)) {}
  PickleMachine(const PickleMachine&) = delete;
  PickleMachine& operator=(const PickleMachine&) = delete;
  // A pickle can append a memoised container to itself (memo get, then APPEND/SETITEM):
  // a shared_ptr cycle that would leak. Any object referenced from inside its own
  // subtree was reached through the memo, so emptying every memoised object breaks
  // all cycles — including objects whose memo slot was later overwritten (ever_memoised_).
  // The caller must be done with run()'s result before this runs.
  ~PickleMachine() {
    for (auto& obj : ever_memoised_) {
      if (!obj) continue;
      std::vector<ObjPtr> children = std::move(obj->items);
      obj->items.clear();
      obj->storage.reset();
    }
  }

  ObjPtr run() {
    while (!step(u8())) {
    }
    if (stack_.size() != 1 || !marks_.empty()) fail("pickle ends with " + std::to_string(stack_.size()) + " values on the stack, expected 1");
    return stack_.back();
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(where_ + ": data.pkl at byte " + std::to_string(pos_) + ": " + what);
  }

  // --- input
  const uint8_t* take(uint64_t n) {
    if (n > in_.size() - pos_) fail("pickle is truncated (needs " + std::to_string(n) + " more bytes)");
    auto p = reinterpret_cast<const uint8_t*>(in_.data() + pos_);
    pos_ += n;
    return p;
  }
  uint8_t u8() { return *take(1); }
  template <typename T>
  T little() {
    T v;
    std::memcpy(&v, take(sizeof(T)), sizeof(T));
    return v;
  }
  std::string line() {  // GLOBAL's newline-terminated operands
    size_t end = in_.find('\n', pos_);
    if (end == std::string_view::npos) fail("pickle is truncated inside GLOBAL");
    std::string s(in_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return s;
  }

  // --- stack
  void push(ObjPtr o) { stack_.push_back(std::move(o)); }
  ObjPtr pop() {
    if (stack_.size() <= floor()) fail("stack underflow");
    auto o = std::move(stack_.back());
    stack_.pop_back();
    return o;
  }
  ObjPtr& top() {
    if (stack_.size() <= floor()) fail("stack underflow");
    return stack_.back();
  }
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  std::vector<ObjPtr> pop_to_mark() {
    if (marks_.empty()) fail("MARK expected");
    std::vector<ObjPtr> items(stack_.begin() + marks_.back(), stack_.end());
    stack_.resize(marks_.back());
    marks_.pop_back();
    return items;
  }
  ObjPtr container(Obj::Kind kind, std::vector<ObjPtr> items) {
    auto o = make(kind);
    o->items = std::move(items);
    return o;
  }
  void extend(ObjPtr& target, Obj::Kind want, std::vector<ObjPtr> items, const char* op) {
    if (target->kind != want) fail(std::string(op) + " on a " + kind_name(target->kind));
    if (want == Obj::Kind::Dict && items.size() % 2) fail(std::string(op) + " with an odd number of items");
    for (auto& it : items) {
      if (it.get() == target.get()) fail("container inserted into itself");
      target->items.push_back(std::move(it));
    }
  }

  // --- memo
  void memo_put(uint64_t index) {
    memo_[index] = top();
    ever_memoised_.push_back(top());  // one per opcode: bounded by the pickle's length
  }
  void memo_get(uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) fail("memo entry " + std::to_string(index) + " was never stored");
    push(it->second);
  }

  ObjPtr str(std::string s) {
    auto o = make(Obj::Kind::Str);
    o->s = std::move(s);
    return o;
  }
  ObjPtr integer(int64_t v) {
    auto o = make(Obj::Kind::Int);
    o->i = v;
    return o;
  }

  static bool is_int(const ObjPtr& o) { return o->kind == Obj::Kind::Int || o->kind == Obj::Kind::Bool; }

  std::vector<int64_t> int_tuple(const ObjPtr& o, const char* what) {
    if (o->kind != Obj::Kind::Tuple) fail(std::string(what) + " is a " + kind_name(o->kind) + ", expected a tuple");
    std::vector<int64_t> v;
    for (auto& it : o->items) {
      if (!is_int(it) || it->i < 0) fail(std::string(what) + " holds a negative or non-integer entry");
      v.push_back(it->i);
    }
    return v;
  }

  // REDUCE: the only calls a state_dict makes. Everything else is refused by
  // name, so a malicious pickle (os.system, eval, ...) gets nowhere.
  ObjPtr call(const ObjPtr& fn, const ObjPtr& args) {
    if (fn->kind != Obj::Kind::Global) fail(std::string("REDUCE on a ") + kind_name(fn->kind));
    if (args->kind != Obj::Kind::Tuple) fail("REDUCE arguments are not a tuple");
    const auto& a = args->items;
    const std::string& name = fn->s;
    if (name == "collections.OrderedDict") {
      if (!a.empty()) fail("OrderedDict called with arguments");
      return make(Obj::Kind::Dict);
    }
    if (name == "torch._utils._rebuild_tensor_v2") {
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      if (a.size() < 6 || a.size() > 7) fail("_rebuild_tensor_v2 takes 6 or 7 arguments, got " + std::to_string(a.size()));
      if (a[0]->kind != Obj::Kind::Storage) fail("_rebuild_tensor_v2: first argument is not a storage");
      if (!is_int(a[1]) || a[1]->i < 0) fail("_rebuild_tensor_v2: storage offset is not a non-negative int");
      auto t = make(Obj::Kind::Tensor);
      t->storage = a[0];
      t->offset = a[1]->i;
      t->shape = int_tuple(a[2], "tensor size");
      t->stride = int_tuple(a[3], "tensor stride");
      if (t->shape.size() != t->stride.size()) fail("tensor size and stride differ in length");
      return t;
    }
    if (name == "torch._utils._rebuild_parameter") {  // (tensor, requires_grad, backward_hooks)
      if (a.size() != 3 || a[0]->kind != Obj::Kind::Tensor) fail("_rebuild_parameter: expected (tensor, bool, hooks)");
      return a[0];
    }
    fail("pickle calls '" + name + "', which a plain state_dict never does; refusing to run it");
  }

  ObjPtr persistent_load(const ObjPtr& pid) {
    // ('storage', torch.FloatStorage, key, location, numel)
    const auto& a = pid->items;
    if (pid->kind != Obj::Kind::Tuple || a.size() != 5 || a[0]->kind != Obj::Kind::Str || a[0]->s != "storage")
      fail("persistent id is not ('storage', type, key, location, numel)");
    if (a[1]->kind != Obj::Kind::Global || a[1]->s.rfind("torch.", 0) != 0)
      fail("persistent id: storage type is not a torch global");
    if (a[2]->kind != Obj::Kind::Str || a[3]->kind != Obj::Kind::Str)
      fail("persistent id: key and location must be strings");
    if (!is_int(a[4]) || a[4]->i < 0) fail("persistent id: numel is not a non-negative int");
    auto s = make(Obj::Kind::Storage);
    s->s = a[1]->s.substr(6);
    s->key = a[2]->s;
    s->i = a[4]->i;
    return s;
  }

  // Executes one opcode; true at STOP.
  bool step(uint8_t op) {
    using K = Obj::Kind;
    switch (op) {
      case 0x80: {  // PROTO
        int proto = u8();
        if (proto > 5) fail("pickle protocol " + std::to_string(proto) + " is unknown");
        return false;
      }
      case 0x95: take(8); return false;  // FRAME: a length hint only
      case '.': return true;             // STOP
      case '(': marks_.push_back(stack_.size()); return false;  // MARK
      case '0': pop(); return false;                            // POP
      case '1': pop_to_mark(); return false;                    // POP_MARK
      case '2': push(top()); return false;                      // DUP
      case 'N': push(make(K::None)); return false;
      case 0x88: case 0x89: {  // NEWTRUE, NEWFALSE
        auto o = make(K::Bool);
        o->i = op == 0x88;
        push(o);
        return false;
      }
      case 'J': push(integer(little<int32_t>())); return false;   // BININT
      case 'K': push(integer(u8())); return false;                // BININT1
      case 'M': push(integer(little<uint16_t>())); return false;  // BININT2
      case 0x8a: {  // LONG1: little-endian two's complement of n bytes
        int n = u8();
        if (n > 8) fail("integer of " + std::to_string(n) + " bytes is too large");
        const uint8_t* p = take(n);
        uint64_t v = 0;
        for (int k = 0; k < n; ++k) v |= static_cast<uint64_t>(p[k]) << (8 * k);
        if (n > 0 && n < 8 && (p[n - 1] & 0x80)) v |= ~uint64_t{0} << (8 * n);  // sign-extend
        push(integer(static_cast<int64_t>(v)));
        return false;
      }
      case 'G': {  // BINFLOAT: big-endian double
        uint64_t bits = __builtin_bswap64(little<uint64_t>());
        auto o = make(K::Float);
        o->f = std::bit_cast<double>(bits);
        push(o);
        return false;
      }
      case 'X': { uint64_t n = little<uint32_t>(); push(str(std::string(reinterpret_cast<const char*>(take(n)), n))); return false; }
      case 0x8c: { uint64_t n = u8(); push(str(std::string(reinterpret_cast<const char*>(take(n)), n))); return false; }
      case 0x8d: { uint64_t n = little<uint64_t>(); push(str(std::string(reinterpret_cast<const char*>(take(n)), n))); return false; }
      case 'c': {  // GLOBAL: recorded by name only; call() decides what may be used
        auto g = make(K::Global);
        std::string module = line();
        g->s = module + "." + line();
        push(g);
        return false;
      }
      case 0x93: {  // STACK_GLOBAL
        auto name = pop(), module = pop();
        if (name->kind != K::Str || module->kind != K::Str) fail("STACK_GLOBAL operands are not strings");
        auto g = make(K::Global);
        g->s = module->s + "." + name->s;
        push(g);
        return false;
      }
      case '}': push(make(K::Dict)); return false;
      case ']': push(make(K::List)); return false;
      case ')': push(make(K::Tuple)); return false;
      case 't': push(container(K::Tuple, pop_to_mark())); return false;
      case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
        std::vector<ObjPtr> items(op - 0x84);
        for (size_t k = items.size(); k-- > 0;) items[k] = pop();
        push(container(K::Tuple, std::move(items)));
        return false;
      }
      case 'q': memo_put(u8()); return false;                // BINPUT
      case 'r': memo_put(little<uint32_t>()); return false;  // LONG_BINPUT
      case 0x94: memo_put(memo_.size()); return false;       // MEMOIZE
      case 'h': memo_get(u8()); return false;                // BINGET
      case 'j': memo_get(little<uint32_t>()); return false;  // LONG_BINGET
      case 'a': { auto v = pop(); extend(top(), K::List, {v}, "APPEND"); return false; }
      case 'e': { auto items = pop_to_mark(); extend(top(), K::List, std::move(items), "APPENDS"); return false; }
      case 's': { auto v = pop(), k = pop(); extend(top(), K::Dict, {k, v}, "SETITEM"); return false; }
      case 'u': { auto items = pop_to_mark(); extend(top(), K::Dict, std::move(items), "SETITEMS"); return false; }
      case 'R': { auto args = pop(), fn = pop(); push(call(fn, args)); return false; }
      case 'b': {  // BUILD: state_dict's _metadata, a tensor's extra state: not needed
        pop();
        auto& target = top();
        if (target->kind != K::Dict && target->kind != K::Tensor) fail(std::string("BUILD on a ") + kind_name(target->kind));
        return false;
      }
      case 'Q': { auto pid = pop(); push(persistent_load(pid)); return false; }  // BINPERSID
      default: {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", op);
        fail(std::string("pickle opcode ") + hex + " is not used by torch state_dicts; unsupported");
      }
    }
  }

  std::string_view in_;
  std::string where_;
  size_t pos_ = 0;
  std::vector<ObjPtr> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, ObjPtr> memo_;
  std::vector<ObjPtr> ever_memoised_;  // every memo_put, for the destructor's cycle breaking
};

// ------------------------------------------------------------ storages

struct StorageType {
  const char* name;
  int itemsize;
  enum { F64, F32, F16, BF16, Integer } kind;
};

constexpr StorageType kStorageTypes[] = {
    {"DoubleStorage", 8, StorageType::F64},   {"FloatStorage", 4, StorageType::F32},
    {"HalfStorage", 2, StorageType::F16},     {"BFloat16Storage", 2, StorageType::BF16},
    {"LongStorage", 8, StorageType::Integer}, {"IntStorage", 4, StorageType::Integer},
    {"ShortStorage", 2, StorageType::Integer}, {"CharStorage", 1, StorageType::Integer},
    {"ByteStorage", 1, StorageType::Integer}, {"BoolStorage", 1, StorageType::Integer},
};

const StorageType* find_storage_type(const std::string& name) {
  for (const auto& t : kStorageTypes)
    if (name == t.name) return &t;
  return nullptr;
}

float element(const StorageType& t, const uint8_t* p) {
  switch (t.kind) {
    case StorageType::F32: { float v; std::memcpy(&v, p, 4); return v; }
    case StorageType::F64: { double v; std::memcpy(&v, p, 8); return static_cast<float>(v); }
    case StorageType::F16: { uint16_t v; std::memcpy(&v, p, 2); return half_to_float(v); }
    case StorageType::BF16: { uint16_t v; std::memcpy(&v, p, 2); return bf16_to_float(v); }
    default: return 0.f;
  }
}

// "(2, 4)", as torch prints a size.
std::string torch_size_text(const std::vector<int64_t>& v) {
  std::string s = "(";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + ")";
}

// Throws unless every element the view (offset, shape, stride) reaches lies
// inside a storage of `numel` elements.
void check_view(const PickledTensor& t, int64_t numel, const std::string& where) {
  int64_t elements = 1, last = t.storage_offset;
  for (size_t d = 0; d < t.shape.size(); ++d) {
    int64_t span;
    if (__builtin_mul_overflow(elements, t.shape[d], &elements) ||
        (t.shape[d] > 0 && (__builtin_mul_overflow(t.shape[d] - 1, t.stride[d], &span) ||
                            __builtin_add_overflow(last, span, &last))))
      throw Error(where + ": tensor '" + t.name + "' size " + torch_size_text(t.shape) + " stride " +
                  torch_size_text(t.stride) + " overflows");
  }
  // Views never hold more elements than their storage; an expanded (stride 0)
  // tensor could, but state_dicts do not contain those and a hostile file
  // could use one to demand terabytes.
  if (elements > numel)
    throw Error(where + ": tensor '" + t.name + "' has " + std::to_string(elements) +
                " elements, more than its storage's " + std::to_string(numel));
  if (elements > 0 && last >= numel)
    throw Error(where + ": tensor '" + t.name + "' (offset " + std::to_string(t.storage_offset) +
                ", size " + torch_size_text(t.shape) + ", stride " + torch_size_text(t.stride) +
                ") reaches element " + std::to_string(last) + " of a storage holding " +
                std::to_string(numel));
}

HostTensor copy_view(const PickledTensor& t, const StorageType& type, const uint8_t* storage) {
  HostTensor out;
  out.shape = t.shape;
  int64_t n = out.numel();
  out.data.resize(n);
  if (n == 0) return out;
  // Walk the index space in row-major order, like torch's .contiguous().
  size_t rank = t.shape.size();
  std::vector<int64_t> index(rank, 0);
  int64_t src = t.storage_offset;
  for (int64_t k = 0; k < n; ++k) {
    out.data[k] = element(type, storage + src * type.itemsize);
    for (size_t d = rank; d-- > 0;) {
      src += t.stride[d];
      if (++index[d] < t.shape[d]) break;
      src -= t.stride[d] * t.shape[d];
      index[d] = 0;
    }
  }
  return out;
}

// ------------------------------------------------------------ zip

std::string zip_message(int code) {
  zip_error_t e;
  zip_error_init_with_code(&e, code);
  std::string s = zip_error_strerror(&e);
  zip_error_fini(&e);
  return s;
}

class ZipReader {
 public:
  explicit ZipReader(const fs::path& path) : where_(path.string()) {
    std::error_code ec;
    file_size_ = fs::file_size(path, ec);
    if (ec) throw Error("cannot open " + where_ + ": " + ec.message());
    int code = 0;
    zip_ = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &code);
    if (!zip_)
      throw Error(where_ + ": cannot read as a zip archive (" + zip_message(code) +
                  "); the file is truncated or damaged");
  }
  ~ZipReader() {
    if (zip_) zip_discard(zip_);
  }
  ZipReader(const ZipReader&) = delete;
  ZipReader& operator=(const ZipReader&) = delete;

  std::vector<std::string> names() const {
    std::vector<std::string> out;
    zip_int64_t n = zip_get_num_entries(zip_, 0);
    for (zip_int64_t i = 0; i < n; ++i)
      if (const char* name = zip_get_name(zip_, i, ZIP_FL_ENC_RAW)) out.push_back(name);
    return out;
  }
  bool has(const std::string& name) const { return zip_name_locate(zip_, name.c_str(), ZIP_FL_ENC_RAW) >= 0; }

  // The entry's size as the archive's directory states it, refusing a size the bytes present
  // cannot produce (deflate expands at most ~1032x): what `read` would return, unread.
  uint64_t size(const std::string& name) const { return stat(name).size; }

  // The whole entry, refusing anything above `limit` bytes before allocating.
  std::vector<uint8_t> read(const std::string& name, uint64_t limit) const {
    const zip_stat_t st = stat(name);
    const zip_uint64_t index = st.index;
    if (st.size > limit)
      throw Error(where_ + ": '" + name + "' is " + std::to_string(st.size) +
                  " bytes, more than the " + std::to_string(limit) + " expected");
    std::vector<uint8_t> data(st.size);
    zip_file_t* f = zip_fopen_index(zip_, index, 0);
    if (!f) throw Error(where_ + ": cannot open '" + name + "': " + zip_strerror(zip_));
    zip_int64_t got = st.size ? zip_fread(f, data.data(), st.size) : 0;
    std::string err = got < 0 ? zip_file_strerror(f) : "";
    // One more read confirms the end of the entry, which is where libzip checks the CRC.
    uint8_t extra;
    if (got == static_cast<zip_int64_t>(st.size) && zip_fread(f, &extra, 1) < 0) {
      err = zip_file_strerror(f);
      got = -1;
    }
    zip_fclose(f);
    if (got != static_cast<zip_int64_t>(st.size))
      throw Error(where_ + ": cannot read '" + name + "' (" +
                  (err.empty() ? "short read" : err) + "); the archive is damaged");
    return data;
  }

 private:
  zip_stat_t stat(const std::string& name) const {
    zip_int64_t index = zip_name_locate(zip_, name.c_str(), ZIP_FL_ENC_RAW);
    if (index < 0) throw Error(where_ + ": archive has no '" + name + "'");
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(zip_, index, 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE))
      throw Error(where_ + ": cannot stat '" + name + "': " + zip_strerror(zip_));
    // The directory's sizes are only claims: allocate no more than the bytes present could produce.
    bool stored = (st.valid & ZIP_STAT_COMP_METHOD) && st.comp_method == ZIP_CM_STORE;
    if (!(st.valid & ZIP_STAT_COMP_SIZE) || st.comp_size > file_size_ ||
        (stored ? st.size != st.comp_size : st.size / 1032 > st.comp_size))
      throw Error(where_ + ": '" + name + "' claims " + std::to_string(st.size) +
                  " bytes that the archive cannot hold; the file is damaged");
    st.index = static_cast<zip_uint64_t>(index);
    return st;
  }

  std::string where_;
  uint64_t file_size_ = 0;
  zip_t* zip_ = nullptr;
};

// First bytes decide the format, so old checkpoints get a useful message.
void check_zip_magic(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + path.string());
  char magic[4] = {};
  in.read(magic, 4);
  if (in.gcount() == 4 && std::memcmp(magic, "PK\x03\x04", 4) == 0) return;
  if (in.gcount() >= 2 && static_cast<uint8_t>(magic[0]) == 0x80)
    throw Error(path.string() +
                ": legacy torch.save format (torch < 1.6) is not supported; re-save it with "
                "torch >= 1.6: torch.save(torch.load(f), f)");
  throw Error(path.string() + ": not a torch.save zip archive (no zip signature)");
}

}  // namespace

std::vector<PickledTensor> parse_state_dict_pickle(std::string_view pickle, const std::string& where) {
  PickleMachine machine(pickle, where);  // outlives root's use: its destructor breaks cycles
  ObjPtr root = machine.run();
  if (root->kind != Obj::Kind::Dict)
    throw Error(where + ": data.pkl holds a " + kind_name(root->kind) + ", not a state_dict");
  std::vector<PickledTensor> out;
  std::set<std::string> names;
  for (size_t k = 0; k + 1 < root->items.size(); k += 2) {
    const auto& key = root->items[k];
    const auto& value = root->items[k + 1];
    if (key->kind != Obj::Kind::Str) throw Error(where + ": state_dict key is a " + std::string(kind_name(key->kind)));
    if (value->kind != Obj::Kind::Tensor)
      throw Error(where + ": state_dict entry '" + key->s + "' is a " + kind_name(value->kind) +
                  ", not a tensor");
    if (!names.insert(key->s).second) throw Error(where + ": tensor '" + key->s + "' appears twice");
    PickledTensor t;
    t.name = key->s;
    t.storage_type = value->storage->s;
    t.storage_key = value->storage->key;
    t.storage_numel = value->storage->i;
    t.storage_offset = value->offset;
    t.shape = value->shape;
    t.stride = value->stride;
    out.push_back(std::move(t));
  }
  return out;
}

namespace {

// data.pkl's tensors; `prefix` is set to the archive's top folder ("name/").
std::vector<PickledTensor> read_archive_pickle(const ZipReader& zip, const std::string& where, std::string& prefix) {
  // torch names the top folder after the file it saved to; find it by data.pkl.
  int found = 0;
  for (const auto& name : zip.names()) {
    if (name.size() >= 8 && name.compare(name.size() - 8, 8, "data.pkl") == 0) {
      std::string dir = name.substr(0, name.size() - 8);
      if (dir.empty() || (dir.back() == '/' && dir.find('/') == dir.size() - 1)) {
        prefix = dir;
        ++found;
      }
    }
  }
  if (found != 1)
    throw Error(where + ": expected one <archive>/data.pkl in the zip, found " + std::to_string(found) +
                " — not a torch.save checkpoint");
  if (zip.has(prefix + "byteorder")) {
    auto order = zip.read(prefix + "byteorder", 16);
    if (std::string(order.begin(), order.end()) != "little")
      throw Error(where + ": storages are big-endian; re-save on a little-endian machine");
  }

  auto pickle = zip.read(prefix + "data.pkl", kMaxPickleBytes);
  return parse_state_dict_pickle(std::string_view(reinterpret_cast<const char*>(pickle.data()), pickle.size()),
                                 where);
}

// The tensors grouped by the storage they view, each storage declared once (one type, one
// size), each view inside its storage, each storage present in the archive with exactly the
// bytes its type and size need. What loading and listing both check, before any data is read.
struct Storage {
  const StorageType* type;
  uint64_t bytes;     // what data/<key> holds
  std::string entry;  // <prefix>data/<key>
  std::vector<const PickledTensor*> views;
};

std::map<std::string, Storage> plan_storages(const ZipReader& zip, const std::vector<PickledTensor>& tensors,
                                             const std::string& prefix, const std::string& where) {
  std::map<std::string, Storage> storages;
  for (const auto& t : tensors) {
    const StorageType* type = find_storage_type(t.storage_type);
    if (!type)
      throw Error(where + ": tensor '" + t.name + "' uses torch." + t.storage_type + ", which is not supported");
    auto [it, fresh] = storages.try_emplace(t.storage_key);
    Storage& s = it->second;
    if (fresh) {
      s.type = type;
      s.bytes = static_cast<uint64_t>(t.storage_numel) * type->itemsize;
      if (s.bytes / type->itemsize != static_cast<uint64_t>(t.storage_numel))
        throw Error(where + ": storage '" + t.storage_key + "' size overflows");
      s.entry = prefix + "data/" + t.storage_key;
    } else if (s.type != type || s.views[0]->storage_numel != t.storage_numel) {
      throw Error(where + ": storage '" + t.storage_key + "' is declared with two different types or sizes");
    }
    check_view(t, t.storage_numel, where);
    s.views.push_back(&t);
  }
  for (const auto& [key, s] : storages) {
    const PickledTensor& first = *s.views[0];
    if (!zip.has(s.entry)) throw Error(where + ": archive has no '" + s.entry + "' (storage of tensor '" + first.name + "')");
    if (uint64_t held = zip.size(s.entry); held != s.bytes)
      throw Error(where + ": '" + s.entry + "' holds " + std::to_string(held) + " bytes but torch." +
                  first.storage_type + " of " + std::to_string(first.storage_numel) + " elements needs " +
                  std::to_string(s.bytes));
  }
  return storages;
}

TensorMap read_torch_bin_unguarded(const fs::path& path) {
  const std::string where = path.string();
  check_zip_magic(path);
  ZipReader zip(path);
  std::string prefix;
  const auto tensors = read_archive_pickle(zip, where, prefix);
  // One storage at a time, so peak memory is the output plus the largest storage.
  TensorMap out;
  for (const auto& [key, s] : plan_storages(zip, tensors, prefix, where)) {
    auto bytes = zip.read(s.entry, s.bytes);  // its CRC checked as it is read
    if (bytes.size() != s.bytes)
      throw Error(where + ": '" + s.entry + "' holds " + std::to_string(bytes.size()) + " bytes but needs " +
                  std::to_string(s.bytes));
    if (s.type->kind == StorageType::Integer) continue;  // position_ids & co: checked, not kept
    for (const PickledTensor* t : s.views) out.emplace(t->name, copy_view(*t, *s.type, bytes.data()));
  }
  return out;
}

}  // namespace

std::vector<TensorInfo> list_torch_bin(const fs::path& path) {
  // torch's storage classes, spelt as safetensors names the same dtypes.
  static const std::map<std::string, std::string> kDTypeNames = {
      {"DoubleStorage", "F64"}, {"FloatStorage", "F32"}, {"HalfStorage", "F16"}, {"BFloat16Storage", "BF16"},
      {"LongStorage", "I64"},   {"IntStorage", "I32"},   {"ShortStorage", "I16"}, {"CharStorage", "I8"},
      {"ByteStorage", "U8"},    {"BoolStorage", "BOOL"}};
  check_zip_magic(path);
  ZipReader zip(path);
  std::string prefix;
  std::vector<TensorInfo> out;
  const auto tensors = read_archive_pickle(zip, path.string(), prefix);
  plan_storages(zip, tensors, prefix, path.string());  // the checks loading makes, no data read
  for (const PickledTensor& t : tensors) {
    auto it = kDTypeNames.find(t.storage_type);
    out.push_back({t.name, it == kDTypeNames.end() ? t.storage_type : it->second, t.shape});
  }
  std::sort(out.begin(), out.end(), [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
  return out;
}

TensorMap read_torch_bin(const fs::path& path) {
  try {
    return read_torch_bin_unguarded(path);
  } catch (const std::bad_alloc&) {
    throw Error(path.string() + ": out of memory while loading; the file may be damaged");
  }
}

}  // namespace bertune::io
