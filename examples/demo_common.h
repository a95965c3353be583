// Shared by producer.cpp and consumer.cpp: the objects of the demo, how the
// pipe variant serialises them, and the summary both sides compute.
#ifndef SAMEPROCESS_DEMO_COMMON_H
#define SAMEPROCESS_DEMO_COMMON_H

#include <cstdint>
#include <cstdio>
#include <ctime>
#include <string>
#include <unordered_map>

namespace demo {

using Map = std::unordered_map<std::string, std::int64_t>;

inline std::uint64_t now_ns()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);  // system-wide: comparable between processes
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

inline std::string make_string(std::size_t length)
{
    std::string s(length, '\0');
    for (std::size_t i = 0; i < length; i++)
        s[i] = static_cast<char>('A' + (i % 26));
    return s;
}

inline std::string key_of(std::size_t i)
{
    return "key-" + std::to_string(i) + "-of-the-shared-map";  // past the small-string buffer
}

inline Map make_map(std::size_t entries)
{
    Map m;
    m.reserve(entries);
    for (std::size_t i = 0; i < entries; i++)
        m.emplace(key_of(i), static_cast<std::int64_t>(i) * 3);
    return m;
}

// What the consumer proves it read: computed over every byte and entry.
struct Summary {
    std::uint64_t string_sum = 0;
    std::int64_t value_sum = 0;
    std::int64_t lookup = -1;
};

inline Summary summarize(const std::string &s, const Map &m)
{
    Summary r;
    for (unsigned char c : s)
        r.string_sum += c;
    for (const auto &entry : m)
        r.value_sum += entry.second;
    auto it = m.find(key_of(42));
    r.lookup = (it == m.end()) ? -1 : it->second;
    return r;
}

inline void print_summary(const char *who, const std::string &s, const Map &m, const Summary &r)
{
    std::printf("%s string_len=%zu string_head=%.16s string_sum=%llu map_size=%zu value_sum=%lld "
                "lookup_key42=%lld\n",
                who, s.size(), s.c_str(), static_cast<unsigned long long>(r.string_sum), m.size(),
                static_cast<long long>(r.value_sum), static_cast<long long>(r.lookup));
}

}  // namespace demo

#endif
