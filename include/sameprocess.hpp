// sameprocess.hpp: C++ containers whose memory lives in the space's shared heap.
//
//   sameprocess::allocator<T>      stateless; allocate = sp_alloc, deallocate = sp_free
//   sameprocess::string            std::basic_string on it
//   sameprocess::vector<T>         std::vector on it
//   sameprocess::unordered_map<K, V>  std::unordered_map on it (strings hashed by content)
//   sameprocess::create<T>(args...) / destroy(p)   an object itself in the shared heap
//   sameprocess::publish(name, p) / lookup<T>(name) / wait_for<T>(name, timeout_ms)
//
// A container built by one program can be read, changed and destroyed by
// another, also after the builder exited, when (1) the container object
// itself is in the shared heap (create<T>), and (2) both programs were
// built with the same standard library (the layout must match).  Nothing
// here has a vtable or points into a program's code; the allocator holds
// no state, so every instance compares equal.
#ifndef SAMEPROCESS_HPP
#define SAMEPROCESS_HPP

#include <cerrno>
#include <cstddef>
#include <functional>
#include <limits>
#include <new>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sameprocess.h"

namespace sameprocess {

template <class T>
struct allocator {
    using value_type = T;
    using size_type = std::size_t;
    using difference_type = std::ptrdiff_t;
    using propagate_on_container_move_assignment = std::true_type;
    using is_always_equal = std::true_type;

    static_assert(alignof(T) <= 16, "the shared heap aligns blocks to 16 bytes");

    allocator() noexcept = default;
    template <class U>
    allocator(const allocator<U> &) noexcept {}

    T *allocate(std::size_t n)
    {
        if (n > std::numeric_limits<std::size_t>::max() / sizeof(T))
            throw std::bad_array_new_length();
        void *p = sp_alloc(n * sizeof(T));
        if (p == nullptr)
            throw std::bad_alloc();
        return static_cast<T *>(p);
    }

    void deallocate(T *p, std::size_t) noexcept { sp_free(p); }
};

template <class T, class U>
bool operator==(const allocator<T> &, const allocator<U> &) noexcept { return true; }
template <class T, class U>
bool operator!=(const allocator<T> &, const allocator<U> &) noexcept { return false; }

using string = std::basic_string<char, std::char_traits<char>, allocator<char>>;

template <class T>
using vector = std::vector<T, allocator<T>>;

// std::hash, except that any std::basic_string<char> is hashed by content
// (so sameprocess::string keys hash like std::string ones).
template <class K>
struct hash : std::hash<K> {};

template <class Traits, class Alloc>
struct hash<std::basic_string<char, Traits, Alloc>> {
    std::size_t operator()(const std::basic_string<char, Traits, Alloc> &s) const noexcept
    {
        return std::hash<std::string_view>{}(std::string_view(s.data(), s.size()));
    }
};

template <class K, class V, class Hash = hash<K>, class Equal = std::equal_to<K>>
using unordered_map = std::unordered_map<K, V, Hash, Equal, allocator<std::pair<const K, V>>>;

// An object in the shared heap (so any program can use and destroy it).
template <class T, class... Args>
T *create(Args &&...args)
{
    void *p = allocator<T>().allocate(1);
    try {
        return ::new (p) T(std::forward<Args>(args)...);
    } catch (...) {
        sp_free(p);
        throw;
    }
}

template <class T>
void destroy(T *p) noexcept
{
    if (p != nullptr) {
        p->~T();
        sp_free(p);
    }
}

// Registry helpers: errors are std::system_error with the errno.
template <class T>
void publish(const char *name, T *p)
{
    int rc = sp_publish(name, static_cast<void *>(p), sizeof(T));
    if (rc != 0)
        throw std::system_error(-rc, std::generic_category(), std::string("sp_publish ") + name);
}

template <class T>
T *lookup(const char *name)
{
    return static_cast<T *>(sp_lookup(name, nullptr));
}

template <class T>
T *wait_for(const char *name, long timeout_ms = -1)
{
    void *p = sp_wait(name, nullptr, timeout_ms);
    if (p == nullptr)
        throw std::system_error(errno, std::generic_category(), std::string("sp_wait ") + name);
    return static_cast<T *>(p);
}

}  // namespace sameprocess

#endif
