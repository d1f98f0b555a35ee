// Tensor: dtype + shape + contiguous row-major bytes. The bytes are either owned (64-byte aligned)
// or borrowed from a memory-mapped file, in which case the tensor is read-only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace lmscope {

using Shape = std::vector<int64_t>;

/** "[2048, 1024]" */
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

class Storage {
public:
    static std::shared_ptr<Storage> allocate(size_t nbytes);
    /** Borrows `n` bytes at `p`; `owner` keeps them alive (e.g. a MappedFile). */
    static std::shared_ptr<Storage> borrow(const void* p, size_t n, std::shared_ptr<const void> owner);
    ~Storage();
    Storage(const Storage&) = delete;
    Storage& operator=(const Storage&) = delete;

    const uint8_t* data() const { return data_; }
    uint8_t* mutable_data();
    size_t size() const { return size_; }
    bool borrowed() const { return owner_ != nullptr; }

private:
    Storage() = default;
    uint8_t* data_ = nullptr;
    size_t size_ = 0;
    std::shared_ptr<const void> owner_;
};

class Tensor {
public:
    Tensor() = default;
    Tensor(DType dtype, Shape shape, std::shared_ptr<Storage> storage);

    /** Uninitialised owned tensor. */
    static Tensor empty(DType dtype, Shape shape);
    static Tensor zeros(DType dtype, Shape shape);
    /** Owned F32 tensor holding `values` (size must equal the shape's numel). */
    static Tensor from_f32(Shape shape, const std::vector<float>& values);

    bool defined() const { return storage_ != nullptr; }
    DType dtype() const { return dtype_; }
    const Shape& shape() const { return shape_; }
    int ndim() const { return static_cast<int>(shape_.size()); }
    int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
    int64_t numel() const { return shape_numel(shape_); }
    size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
    bool borrowed() const { return storage_ && storage_->borrowed(); }

    const void* raw() const { return storage_->data(); }
    void* raw_mut() { return storage_->mutable_data(); }
    template <typename T>
    const T* data() const { return reinterpret_cast<const T*>(raw()); }
    template <typename T>
    T* data_mut() { return reinterpret_cast<T*>(raw_mut()); }

    /** Element i as double (any dtype). */
    double at_f64(int64_t i) const { return load_as_f64(raw(), dtype_, static_cast<size_t>(i)); }
    /** Converted copy (RNE for narrowing float conversions). */
    Tensor to(DType dtype) const;
    /** All elements as f32 / f64. */
    std::vector<float> to_f32_vector() const;
    std::vector<double> to_f64_vector() const;
    /** Same bytes, new shape with the same numel. */
    Tensor reshape(Shape shape) const;

private:
    DType dtype_ = DType::F32;
    Shape shape_;
    std::shared_ptr<Storage> storage_;
};

}  // namespace lmscope
