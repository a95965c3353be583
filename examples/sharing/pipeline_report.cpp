// Stage 2 of the C++ pipeline: wait for "word-counts" (published by stage 1,
// which has exited by now), print the most frequent words, then destroy the
// map: every node and string stage 1 allocated is freed here.
#include <algorithm>
#include <cstdio>
#include <string>
#include <unistd.h>
#include <utility>
#include <vector>

#include "sameprocess.hpp"

namespace sp = sameprocess;

using Counts = sp::unordered_map<sp::string, long>;

int main(int argc, char **argv)
{
    std::size_t top = (argc > 1) ? std::stoul(argv[1]) : 5;
    Counts *counts = sp::wait_for<Counts>("word-counts", 10000);

    std::vector<std::pair<long, std::string>> ranked;
    for (const auto &[word, n] : *counts)
        ranked.emplace_back(n, std::string(word.data(), word.size()));
    std::sort(ranked.begin(), ranked.end(), [](const auto &a, const auto &b) {
        return (a.first != b.first) ? (a.first > b.first) : (a.second < b.second);
    });
    std::printf("stage 2 (pid %d) found %zu words in the map at %p:\n", static_cast<int>(getpid()),
                counts->size(), static_cast<void *>(counts));
    for (std::size_t i = 0; i < std::min(top, ranked.size()); i++)
        std::printf("  %-12s %ld\n", ranked[i].second.c_str(), ranked[i].first);

    sp::destroy(counts);           // frees what stage 1 allocated
    sp_unpublish("word-counts");
    std::printf("stage 2: map destroyed and unpublished\n");
    return 0;
}
