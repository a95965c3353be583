// Benchmark: std::unordered_map<std::string, long> with heap-allocated keys.
//
// usage: umap_bench [entries]   (default 600,000: about 1 s on the 2-core dev machine)
// Inserts the entries, looks each one up, erases one in eight by key, then
// clears the map.  Keys are longer than the small-string buffer, so every key
// is its own heap block.  Prints "checksum=N" (depends only on the entry
// count), "erased=N" and "seconds=S".
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <unordered_map>

static std::string key_for(long i)
{
    char buf[48];
    std::snprintf(buf, sizeof buf, "sameprocess-benchmark-key-%09ld", i);
    return std::string(buf);
}

int main(int argc, char **argv)
{
    const long entries = (argc > 1) ? std::atol(argv[1]) : 600000L;
    unsigned long long checksum = 0;

    auto t0 = std::chrono::steady_clock::now();
    std::unordered_map<std::string, long> map;
    for (long i = 0; i < entries; i++)
        map.emplace(key_for(i), i * 3);
    for (long i = 0; i < entries; i++) {
        auto hit = map.find(key_for(i));
        if (hit != map.end())
            checksum += static_cast<unsigned long long>(hit->second);
    }
    unsigned long erased = 0;
    for (long i = 0; i < entries; i += 8)
        erased += map.erase(key_for(i));
    map.clear();
    auto t1 = std::chrono::steady_clock::now();

    std::printf("checksum=%llu\n", checksum);
    std::printf("erased=%lu\n", erased);
    std::printf("seconds=%.3f\n", std::chrono::duration<double>(t1 - t0).count());
    return 0;
}
