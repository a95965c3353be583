// Shared by zc_producer.cpp and zc_consumer.cpp: the objects the producer
// builds and the way both describe them, so the two print identical lines
// for the same objects.
#ifndef ZC_COMMON_H
#define ZC_COMMON_H

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace zc {

const std::size_t kStringLength = 1000;

// "ABCDEFGHIJKLMNOPQRSTUVWXYZ" repeated: a heap string (far past the
// small-string buffer).
inline std::string make_string()
{
    std::string s;
    s.reserve(kStringLength);
    for (std::size_t i = 0; i < kStringLength; i++)
        s.push_back(static_cast<char>('A' + (i % 26)));
    return s;
}

inline std::unordered_map<std::string, int> make_map()
{
    return {
        {"alpha", 1},
        {"beta", 2},
        {"gamma", 3},
        {"a key longer than the small string buffer", 4},
    };
}

inline unsigned long sum_bytes(const std::string &s)
{
    unsigned long sum = 0;
    for (unsigned char c : s)
        sum += c;
    return sum;
}

// Prints string_len, string_sum, string_head (first 16 chars), map_size and
// map_entries (sorted "key:value" joined by ";"), and map_lookup_beta (the
// value find("beta") returns through the table's own buckets).
inline void describe(const std::string &s, const std::unordered_map<std::string, int> &m)
{
    std::printf("string_len=%zu\n", s.size());
    std::printf("string_sum=%lu\n", sum_bytes(s));
    std::printf("string_head=%s\n", s.substr(0, 16).c_str());

    std::vector<std::pair<std::string, int>> entries(m.begin(), m.end());
    std::sort(entries.begin(), entries.end());
    std::string joined;
    for (const auto &entry : entries) {
        if (!joined.empty())
            joined += ";";
        joined += entry.first + ":" + std::to_string(entry.second);
    }
    std::printf("map_size=%zu\n", m.size());
    std::printf("map_entries=%s\n", joined.c_str());
    auto beta = m.find("beta");
    std::printf("map_lookup_beta=%d\n", (beta == m.end()) ? -1 : beta->second);
    std::fflush(stdout);
}

}  // namespace zc

#endif
