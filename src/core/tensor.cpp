#include "core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "core/error.h"

namespace lmscope {

std::string shape_str(const Shape& s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i) {
        if (i) out += ", ";
        out += std::to_string(s[i]);
    }
    return out + "]";
}

int64_t shape_numel(const Shape& s) {
    int64_t n = 1;
    for (int64_t d : s) n *= d;
    return n;
}

std::shared_ptr<Storage> Storage::allocate(size_t nbytes) {
    std::shared_ptr<Storage> s(new Storage());
    size_t padded = (nbytes + 63) / 64 * 64;
    if (padded == 0) padded = 64;
    s->data_ = static_cast<uint8_t*>(std::aligned_alloc(64, padded));
    if (!s->data_) throw std::bad_alloc();
    s->size_ = nbytes;
    return s;
}

std::shared_ptr<Storage> Storage::borrow(const void* p, size_t n, std::shared_ptr<const void> owner) {
    LMS_CHECK(owner != nullptr);
    std::shared_ptr<Storage> s(new Storage());
    s->data_ = static_cast<uint8_t*>(const_cast<void*>(p));
    s->size_ = n;
    s->owner_ = std::move(owner);
    return s;
}

Storage::~Storage() {
    if (!owner_) std::free(data_);
}

uint8_t* Storage::mutable_data() {
    LMS_CHECK(!borrowed());  // borrowed bytes are a read-only file mapping
    return data_;
}

Tensor::Tensor(DType dtype, Shape shape, std::shared_ptr<Storage> storage)
    : dtype_(dtype), shape_(std::move(shape)), storage_(std::move(storage)) {
    LMS_CHECK(storage_ && storage_->size() >= nbytes());
}

Tensor Tensor::empty(DType dtype, Shape shape) {
    size_t n = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
    return Tensor(dtype, std::move(shape), Storage::allocate(n));
}

Tensor Tensor::zeros(DType dtype, Shape shape) {
    Tensor t = empty(dtype, std::move(shape));
    std::memset(t.raw_mut(), 0, t.nbytes());
    return t;
}

Tensor Tensor::from_f32(Shape shape, const std::vector<float>& values) {
    Tensor t = empty(DType::F32, std::move(shape));
    LMS_CHECK(static_cast<int64_t>(values.size()) == t.numel());
    std::memcpy(t.raw_mut(), values.data(), t.nbytes());
    return t;
}

Tensor Tensor::to(DType dtype) const {
    Tensor out = empty(dtype, shape_);
    convert(raw(), dtype_, out.raw_mut(), dtype, static_cast<size_t>(numel()));
    return out;
}

std::vector<float> Tensor::to_f32_vector() const {
    std::vector<float> v(static_cast<size_t>(numel()));
    if (dtype_is_float(dtype_)) {
        convert(raw(), dtype_, v.data(), DType::F32, v.size());
    } else {
        for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(at_f64(static_cast<int64_t>(i)));
    }
    return v;
}

std::vector<double> Tensor::to_f64_vector() const {
    std::vector<double> v(static_cast<size_t>(numel()));
    for (size_t i = 0; i < v.size(); ++i) v[i] = at_f64(static_cast<int64_t>(i));
    return v;
}

Tensor Tensor::reshape(Shape shape) const {
    LMS_CHECK(shape_numel(shape) == numel());
    return Tensor(dtype_, std::move(shape), storage_);
}

}  // namespace lmscope
