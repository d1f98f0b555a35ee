// Checked field access for tokenizer.json: bad input is reported, never asserted.
#include "tokenizer/json_fields.h"

#include "core/error.h"

namespace lmscope::tok {

std::string json_kind(const Json& j) {
    switch (j.type()) {
        case Json::value_t::null:
            return "null";
        case Json::value_t::object:
            return "an object";
        case Json::value_t::array:
            return "an array";
        case Json::value_t::string:
            return "a string";
        case Json::value_t::boolean:
            return "a boolean";
        case Json::value_t::number_integer:
        case Json::value_t::number_unsigned:
            return "an integer";
        case Json::value_t::number_float:
            return "a number";
        default:
            return "an unexpected value";
    }
}

std::string json_quote(const std::string& s) {
    // invalid UTF-8 is replaced rather than thrown: this only builds an error message
    return Json(s).dump(-1, ' ', false, Json::error_handler_t::replace);
}

const Json* find_field(const Json& obj, const char* key) {
    if (!obj.is_object()) return nullptr;
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return nullptr;
    return &*it;
}

void need_object(const Json& obj, const std::string& label, const std::string& path) {
    if (!obj.is_object()) fail("{}: {}: expected an object, found {}", label, path, json_kind(obj));
}

const Json& need_field(const Json& obj, const char* key, const std::string& label, const std::string& path) {
    need_object(obj, label, path);
    const Json* f = find_field(obj, key);
    if (!f) fail("{}: {}.{}: missing", label, path, key);
    return *f;
}

bool bool_field(const Json& obj, const char* key, bool fallback, const std::string& label,
                const std::string& path) {
    const Json* f = find_field(obj, key);
    if (!f) return fallback;
    if (!f->is_boolean()) fail("{}: {}.{}: expected a boolean, found {}", label, path, key, json_kind(*f));
    return f->get<bool>();
}

std::string string_field(const Json& obj, const char* key, const std::string& label,
                         const std::string& path) {
    const Json& f = need_field(obj, key, label, path);
    if (!f.is_string()) fail("{}: {}.{}: expected a string, found {}", label, path, key, json_kind(f));
    return f.get<std::string>();
}

std::string opt_string_field(const Json& obj, const char* key, const std::string& fallback,
                             const std::string& label, const std::string& path) {
    const Json* f = find_field(obj, key);
    if (!f) return fallback;
    if (!f->is_string()) fail("{}: {}.{}: expected a string, found {}", label, path, key, json_kind(*f));
    return f->get<std::string>();
}

}  // namespace lmscope::tok
