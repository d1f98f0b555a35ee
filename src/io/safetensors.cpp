// safetensors reader and writer. The header is parsed with nlohmann::json and every field is checked
// before any tensor is handed out; tensors borrow the mmap'ed bytes. The writer streams one tensor at
// a time into an atomically renamed temp file.
#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_set>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/out_file.h"

namespace fs = std::filesystem;

namespace lmscope {

namespace {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

// Names and JSON text end up in one-line messages: control bytes are escaped and long text is cut.
std::string printable(std::string_view s, size_t max_len = 160) {
    std::string out;
    for (unsigned char c : s) {
        if (out.size() >= max_len) {
            out += "...";
            break;
        }
        if (c < 0x20 || c == 0x7f)
            out += fmt::format("\\x{:02x}", c);
        else
            out += static_cast<char>(c);
    }
    return out;
}

std::string primitive_text(const Json& j) {
    return printable(j.dump(-1, ' ', false, Json::error_handler_t::replace), 60);
}

// Shows a JSON value without recursing into nested containers: crafted headers nest them deeply.
std::string snippet(const Json& j) {
    if (j.is_primitive()) return primitive_text(j);
    if (j.is_object()) return "{...}";
    std::string out = "[";
    size_t i = 0;
    for (const Json& e : j) {
        if (i == 8 || out.size() > 100) {
            out += ", ...";
            break;
        }
        if (i++) out += ", ";
        out += e.is_primitive() ? primitive_text(e) : (e.is_array() ? "[...]" : "{...}");
    }
    return out + "]";
}

// shape_str() for messages, capped so a 10000-dimension shape stays readable
std::string shape_text(const Shape& s) {
    if (s.size() <= 16) return shape_str(s);
    Shape head(s.begin(), s.begin() + 16);
    std::string t = shape_str(head);
    t.pop_back();
    return fmt::format("{}, ... ({} dims)]", t, s.size());
}

std::optional<uint64_t> as_u64(const Json& j) {
    if (j.is_number_unsigned()) return j.get<uint64_t>();
    if (j.is_number_integer()) {
        int64_t v = j.get<int64_t>();
        if (v >= 0) return static_cast<uint64_t>(v);
    }
    return std::nullopt;
}

std::string supported_dtypes() {
    std::string s;
    for (int i = 0; i < kNumDTypes; ++i) {
        if (i) s += ", ";
        s += dtype_name(static_cast<DType>(i));
    }
    return s;
}

// Parses the header, rejecting duplicate keys at any level: nlohmann would silently keep the last one,
// so two entries for one tensor name (or two "dtype" fields) would pass unnoticed.
Json parse_header(const uint8_t* p, size_t n, const std::string& label) {
    std::vector<std::unordered_set<std::string>> open_objects;
    std::string duplicate;
    Json::parser_callback_t track = [&](int, Json::parse_event_t ev, Json& parsed) {
        switch (ev) {
            case Json::parse_event_t::object_start:
                open_objects.emplace_back();
                break;
            case Json::parse_event_t::object_end:
                if (!open_objects.empty()) open_objects.pop_back();
                break;
            case Json::parse_event_t::key:
                if (!open_objects.empty() && parsed.is_string() &&
                    !open_objects.back().insert(parsed.get_ref<const std::string&>()).second &&
                    duplicate.empty())
                    duplicate = parsed.get_ref<const std::string&>();
                break;
            default:
                break;
        }
        return true;
    };
    Json j;
    try {
        j = Json::parse(p, p + n, track);
    } catch (const Json::exception& e) {
        fail("{}: header is not valid JSON: {}", label, printable(e.what(), 240));
    }
    if (!duplicate.empty()) fail("{}: header has duplicate key '{}'", label, printable(duplicate));
    return j;
}

TensorInfo parse_entry(const std::string& label, const std::string& name, const Json& v, uint64_t data_size) {
    const std::string where = fmt::format("{}: tensor '{}'", label, printable(name));
    if (!v.is_object())
        fail("{}: entry must be an object with dtype, shape and data_offsets, found {}", where,
             v.type_name());
    auto field = [&](const char* key) -> const Json& {
        auto it = v.find(key);
        if (it == v.end()) fail("{}: entry has no '{}'", where, key);
        return *it;
    };
    const Json& jdtype = field("dtype");
    const Json& jshape = field("shape");
    const Json& joffsets = field("data_offsets");

    if (!jdtype.is_string()) fail("{}: dtype must be a string, found {}", where, snippet(jdtype));
    const std::string& dname = jdtype.get_ref<const std::string&>();
    std::optional<DType> dtype = dtype_from_name(dname);
    if (!dtype)
        fail("{}: unknown dtype '{}' (supported: {})", where, printable(dname, 40), supported_dtypes());

    if (!jshape.is_array())
        fail("{}: shape must be an array of non-negative integers, found {}", where, snippet(jshape));
    TensorInfo t;
    t.name = name;
    t.dtype = *dtype;
    t.file = label;
    // Every prefix product must fit in int64: shape_numel() multiplies in that order.
    int64_t numel = 1;
    for (const Json& d : jshape) {
        std::optional<uint64_t> u = as_u64(d);
        if (!u || *u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
            fail("{}: shape must be an array of non-negative integers, found {}", where, snippet(jshape));
        t.shape.push_back(static_cast<int64_t>(*u));
        if (__builtin_mul_overflow(numel, t.shape.back(), &numel))
            fail("{}: shape {} has more elements than fit in 64 bits", where, snippet(jshape));
    }

    std::optional<uint64_t> b, e;
    if (joffsets.is_array() && joffsets.size() == 2) {
        b = as_u64(joffsets[0]);
        e = as_u64(joffsets[1]);
    }
    if (!b || !e)
        fail("{}: data_offsets must be two non-negative integers [begin, end], found {}", where,
             snippet(joffsets));
    if (*b > *e) fail("{}: data_offsets [{}, {}] have begin > end", where, *b, *e);
    if (*e > data_size)
        fail("{}: data_offsets [{}, {}] end beyond the data section of {} bytes (truncated file?)", where, *b,
             *e, data_size);
    uint64_t need = 0;
    if (__builtin_mul_overflow(static_cast<uint64_t>(numel), static_cast<uint64_t>(dtype_size(t.dtype)),
                               &need))
        fail("{}: {} {} needs more bytes than fit in 64 bits", where, dtype_name(t.dtype),
             shape_text(t.shape));
    if (*e - *b != need)
        fail("{}: data_offsets [{}, {}] hold {} bytes but {} {} needs {}", where, *b, *e, *e - *b,
             dtype_name(t.dtype), shape_text(t.shape), need);
    t.begin = *b;
    t.end = *e;
    return t;
}

// What Checkpoint::open assembles before it fills the object.
struct Loaded {
    std::vector<SafetensorsFile> files;
    std::map<std::string, size_t> where;
};

void add_file(Loaded& l, SafetensorsFile f, const std::string& context) {
    for (const TensorInfo& t : f.tensors()) {
        auto [it, inserted] = l.where.emplace(t.name, l.files.size());
        if (!inserted)
            fail("{}: tensor '{}' is in both '{}' and '{}'", context, printable(t.name),
                 l.files[it->second].path(), f.path());
    }
    l.files.push_back(std::move(f));
}

bool ends_with(const std::string& s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

Loaded load_index(const std::string& index_path) {
    const std::string text = read_file(index_path);
    Json j;
    try {
        j = Json::parse(text);
    } catch (const Json::exception& e) {
        fail("{}: not valid JSON: {}", index_path, printable(e.what(), 240));
    }
    if (!j.is_object()) fail("{}: must be a JSON object, found {}", index_path, j.type_name());
    auto wm = j.find("weight_map");
    if (wm == j.end()) fail("{}: no 'weight_map' (tensor name -> shard file)", index_path);
    if (!wm->is_object())
        fail("{}: 'weight_map' must be an object of tensor name -> shard file, found {}", index_path,
             wm->type_name());
    if (wm->empty()) fail("{}: 'weight_map' lists no tensors", index_path);
    // metadata.total_size is informational (often counts padding differently): it is not checked.

    std::map<std::string, std::string> shards;  // shard -> first tensor listed for it, for messages
    for (auto it = wm->begin(); it != wm->end(); ++it) {
        if (!it->is_string())
            fail("{}: weight_map entry for tensor '{}' must be a shard file name, found {}", index_path,
                 printable(it.key()), snippet(*it));
        shards.emplace(it->get<std::string>(), it.key());
    }

    const fs::path dir = fs::path(index_path).parent_path();
    Loaded l;
    std::map<std::string, size_t> shard_index;
    for (const auto& [shard, first_tensor] : shards) {
        const fs::path p = dir / shard;
        std::error_code ec;
        if (!fs::is_regular_file(p, ec))
            fail("{}: shard '{}' listed for tensor '{}' is missing", index_path, printable(shard),
                 printable(first_tensor));
        shard_index[shard] = l.files.size();
        add_file(l, SafetensorsFile::open(p.string()), index_path);
    }
    for (auto it = wm->begin(); it != wm->end(); ++it) {
        const std::string& shard = it->get_ref<const std::string&>();
        if (!l.files[shard_index.at(shard)].find(it.key()))
            fail("{}: tensor '{}' is listed in shard '{}' but that shard does not contain it", index_path,
                 printable(it.key()), printable(shard));
    }
    return l;
}

Loaded load_files(const std::vector<std::string>& paths, const std::string& context) {
    Loaded l;
    for (const std::string& p : paths) add_file(l, SafetensorsFile::open(p), context);
    return l;
}

Loaded load_folder(const std::string& dir) {
    const fs::path d(dir);
    std::error_code ec;
    if (fs::is_regular_file(d / "model.safetensors.index.json", ec))
        return load_index((d / "model.safetensors.index.json").string());
    std::vector<std::string> indexes, files;
    for (const auto& entry : fs::directory_iterator(d, ec)) {
        const std::string name = entry.path().filename().string();
        std::error_code ec2;
        if (!entry.is_regular_file(ec2)) continue;
        if (ends_with(name, ".safetensors.index.json")) indexes.push_back(entry.path().string());
        if (ends_with(name, ".safetensors")) files.push_back(entry.path().string());
    }
    if (ec) fail("{}: cannot list folder: {}", dir, ec.message());
    std::sort(indexes.begin(), indexes.end());
    std::sort(files.begin(), files.end());
    if (!indexes.empty()) return load_index(indexes.front());
    if (fs::is_regular_file(d / "model.safetensors", ec))
        return load_files({(d / "model.safetensors").string()}, "checkpoint " + dir);
    if (files.empty())
        fail(
            "{}: no safetensors files in folder (expected model.safetensors.index.json, model.safetensors "
            "or *.safetensors)",
            dir);
    return load_files(files, "checkpoint " + dir);
}

}  // namespace

// ---- SafetensorsFile ----

SafetensorsFile SafetensorsFile::open(const std::string& path) {
    std::shared_ptr<MappedFile> m = MappedFile::open(path);
    const uint8_t* data = m->data();
    const size_t size = m->size();
    return parse(data, size, path, std::shared_ptr<const void>(std::move(m)));
}

SafetensorsFile SafetensorsFile::parse(const uint8_t* data, size_t size, const std::string& label,
                                       std::shared_ptr<const void> owner) {
    if (size < 8)
        fail("{}: file is {} bytes, too short for the 8-byte header length (not a safetensors file?)", label,
             size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
    // Compare without computing 8 + n: n comes from the file and may be close to 2^64.
    if (n > kMaxSafetensorsHeaderBytes)
        fail("{}: header length {} exceeds the limit of {} bytes (corrupt file?)", label, n,
             kMaxSafetensorsHeaderBytes);
    if (n > size - 8)
        fail("{}: header length {} needs {} bytes but the file has {} (truncated file?)", label, n, n + 8,
             size);

    Json header = parse_header(data + 8, static_cast<size_t>(n), label);
    if (!header.is_object()) fail("{}: header must be a JSON object, found {}", label, header.type_name());

    SafetensorsFile f;
    f.path_ = label;
    f.owner_ = std::move(owner);
    f.data_section_ = data + 8 + n;
    const uint64_t data_size = size - 8 - n;
    for (auto it = header.begin(); it != header.end(); ++it) {
        if (it.key() == "__metadata__") {
            if (it->is_null()) continue;  // the Python reader accepts null as "no metadata"
            if (!it->is_object())
                fail("{}: __metadata__ must be an object of strings, found {}", label, it->type_name());
            for (auto m = it->begin(); m != it->end(); ++m) {
                if (!m->is_string())
                    fail("{}: __metadata__ '{}' must be a string, found {}", label, printable(m.key()),
                         snippet(*m));
                f.metadata_[m.key()] = m->get<std::string>();
            }
            continue;
        }
        f.tensors_.push_back(parse_entry(label, it.key(), *it, data_size));
    }

    std::sort(f.tensors_.begin(), f.tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
        if (a.begin != b.begin) return a.begin < b.begin;
        if (a.end != b.end) return a.end < b.end;
        return a.name < b.name;
    });
    // Zero-sized tensors hold no bytes, so they cannot overlap anything; gaps are allowed.
    const TensorInfo* prev = nullptr;
    for (const TensorInfo& t : f.tensors_) {
        if (t.begin == t.end) continue;
        if (prev && t.begin < prev->end)
            fail("{}: tensor '{}' data_offsets [{}, {}] overlap tensor '{}' data_offsets [{}, {}]", label,
                 printable(t.name), t.begin, t.end, printable(prev->name), prev->begin, prev->end);
        prev = &t;
    }
    for (size_t i = 0; i < f.tensors_.size(); ++i) f.index_[f.tensors_[i].name] = i;
    return f;
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
}

Tensor SafetensorsFile::get(const std::string& name) const {
    const TensorInfo* t = find(name);
    if (!t) fail("{}: no tensor '{}'", path_, printable(name));
    const uint8_t* p = data_section_ + t->begin;
    const size_t n = t->nbytes();
    // Borrow when the bytes are aligned for their dtype (always so for files written by safetensors or
    // by us with dtypes in descending size); a misaligned tensor is copied so typed access stays defined.
    const bool aligned = reinterpret_cast<uintptr_t>(p) % dtype_size(t->dtype) == 0;
    if (owner_ && (aligned || n == 0)) return Tensor(t->dtype, t->shape, Storage::borrow(p, n, owner_));
    Tensor copy = Tensor::empty(t->dtype, t->shape);
    if (n) std::memcpy(copy.raw_mut(), p, n);
    return copy;
}

// ---- Checkpoint ----

Checkpoint Checkpoint::open(const std::string& path) {
    std::error_code ec;
    const fs::file_status st = fs::status(path, ec);
    if (!fs::exists(st)) fail("{}: no such file or folder", path);
    Loaded l;
    Checkpoint c;
    if (fs::is_directory(st)) {
        c.dir_ = path;
        l = load_folder(path);
    } else {
        const fs::path parent = fs::path(path).parent_path();
        c.dir_ = parent.empty() ? std::string(".") : parent.string();
        if (ends_with(path, ".json"))
            l = load_index(path);
        else
            l = load_files({path}, "checkpoint " + c.dir_);
    }
    c.files_ = std::move(l.files);
    c.where_ = std::move(l.where);
    return c;
}

std::vector<std::string> Checkpoint::names() const {
    std::vector<std::string> out;
    out.reserve(where_.size());
    for (const auto& [name, i] : where_) out.push_back(name);
    return out;
}

const TensorInfo& Checkpoint::info(const std::string& name) const {
    auto it = where_.find(name);
    if (it == where_.end()) fail("checkpoint {}: no tensor '{}'", dir_, printable(name));
    return *files_[it->second].find(name);
}

Tensor Checkpoint::get(const std::string& name) const {
    auto it = where_.find(name);
    if (it == where_.end()) fail("checkpoint {}: no tensor '{}'", dir_, printable(name));
    return files_[it->second].get(name);
}

const std::map<std::string, std::string>& Checkpoint::metadata() const {
    static const std::map<std::string, std::string> kEmpty;
    return files_.empty() ? kEmpty : files_.front().metadata();
}

// ---- SafetensorsWriter ----

void SafetensorsWriter::add(const std::string& name, const Tensor& t) {
    if (!t.defined()) fail("safetensors writer: tensor '{}' is undefined", printable(name));
    Tensor keep = t;
    add_lazy(name, t.dtype(), t.shape(), [keep](uint8_t* dst) {
        if (keep.nbytes()) std::memcpy(dst, keep.raw(), keep.nbytes());
    });
}

void SafetensorsWriter::add_lazy(const std::string& name, DType dtype, const Shape& shape,
                                 std::function<void(uint8_t* dst)> produce) {
    if (name == "__metadata__") fail("safetensors writer: '__metadata__' is reserved, not a tensor name");
    int64_t numel = 1;
    uint64_t bytes = 0;
    for (int64_t d : shape)
        if (d < 0 || __builtin_mul_overflow(numel, d, &numel))
            fail("safetensors writer: tensor '{}': invalid shape {}", printable(name), shape_text(shape));
    if (__builtin_mul_overflow(static_cast<uint64_t>(numel), static_cast<uint64_t>(dtype_size(dtype)),
                               &bytes))
        fail("safetensors writer: tensor '{}': {} {} is too large", printable(name), dtype_name(dtype),
             shape_text(shape));
    entries_.push_back(Entry{name, dtype, shape, std::move(produce)});
}

size_t SafetensorsWriter::data_bytes() const {
    size_t total = 0;
    for (const Entry& e : entries_) total += static_cast<size_t>(shape_numel(e.shape)) * dtype_size(e.dtype);
    return total;
}

void SafetensorsWriter::write(const std::string& path) const {
    // Header key order matches the Python library: __metadata__ first, then tensors in data order,
    // each as {"dtype", "shape", "data_offsets"}; compact JSON, padded with spaces to 8 bytes. The
    // object is assembled from per-entry dumps: ordered_json's key lookup is linear, O(n^2) overall.
    std::string text = "{";
    std::unordered_set<std::string> seen;
    uint64_t offset = 0;
    size_t max_bytes = 1;
    try {
        if (!metadata_.empty()) text += "\"__metadata__\":" + Json(metadata_).dump();
        for (const Entry& e : entries_) {
            if (!seen.insert(e.name).second) fail("{}: tensor '{}' was added twice", path, printable(e.name));
            const size_t n = static_cast<size_t>(shape_numel(e.shape)) * dtype_size(e.dtype);
            OrderedJson t = OrderedJson::object();
            t["dtype"] = dtype_name(e.dtype);
            t["shape"] = e.shape;
            t["data_offsets"] = OrderedJson::array({offset, offset + n});
            if (text.size() > 1) text += ',';
            text += Json(e.name).dump() + ":" + t.dump();
            offset += n;
            max_bytes = std::max(max_bytes, n);
        }
    } catch (const Json::exception&) {
        fail("{}: a tensor name or metadata string is not valid UTF-8", path);
    }
    text += '}';
    text.append((8 - text.size() % 8) % 8, ' ');
    if (text.size() > kMaxSafetensorsHeaderBytes)
        fail("{}: header would be {} bytes, over the {}-byte limit readers accept", path, text.size(),
             kMaxSafetensorsHeaderBytes);

    write_file_atomic(path, [&](const std::string& tmp) {
        OutFile f(tmp);
        uint8_t len[8];
        for (int i = 0; i < 8; ++i)
            len[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));
        f.write(len, 8);
        f.write(text);
        // One reusable buffer, sized for the largest tensor: only one tensor's bytes live at a time.
        std::vector<uint8_t> buf;
        for (const Entry& e : entries_) {
            const size_t n = static_cast<size_t>(shape_numel(e.shape)) * dtype_size(e.dtype);
            if (buf.empty()) buf.resize(max_bytes);
            e.produce(buf.data());
            f.write(buf.data(), n);
        }
        f.close();
    });
}

}  // namespace lmscope
