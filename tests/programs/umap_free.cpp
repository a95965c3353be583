// Builds an std::unordered_map of 1,000,000 heap-allocated std::string keys,
// frees all of it, and exits 0.  glibc keeps the freed memory in its arenas,
// so natively the process still holds ~100 MiB when it exits.
// usage: umap_free [entries]   Prints "entries=N" and "after_clear=0".
#include <cstdio>
#include <cstdlib>
#include <string>
#include <unordered_map>

int main(int argc, char **argv)
{
    const long entries = (argc > 1) ? std::atol(argv[1]) : 1000000L;
    std::size_t built = 0, after = 1;
    {
        std::unordered_map<std::string, long> map;
        char buf[64];
        for (long i = 0; i < entries; i++) {
            std::snprintf(buf, sizeof buf, "a key longer than the buffer %09ld", i);
            map.emplace(buf, i);
        }
        built = map.size();
        map.clear();
        map.rehash(0);
        after = map.size();
    }
    std::printf("entries=%zu\nafter_clear=%zu\n", built, after);
    return (built == static_cast<std::size_t>(entries)) ? 0 : 1;
}
