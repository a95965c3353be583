// Stage 1 of the C++ pipeline: count the words of stdin into a
// sameprocess::unordered_map<sameprocess::string, long> that lives in the
// space's shared heap, publish it as "word-counts", and exit.  The map
// outlives this program; stage 2 reads it and frees it.
#include <cctype>
#include <unistd.h>
#include <cstdio>
#include <iostream>
#include <string>

#include "sameprocess.hpp"

namespace sp = sameprocess;

using Counts = sp::unordered_map<sp::string, long>;

int main()
{
    if (!sp_in_space()) {
        std::fprintf(stderr, "pipeline_build: run me in a sameprocess space\n");
        return 1;
    }
    Counts *counts = sp::create<Counts>();  // the map object itself is shared too
    std::string word;
    long total = 0;
    while (std::cin >> word) {
        sp::string key;
        for (char c : word) {
            if (std::isalpha(static_cast<unsigned char>(c)))
                key += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        }
        if (!key.empty()) {
            ++(*counts)[key];
            ++total;
        }
    }
    sp::publish("word-counts", counts);
    std::printf("stage 1 (pid %d): %ld words, %zu distinct, map published at %p; exiting\n",
                static_cast<int>(getpid()), total, counts->size(), static_cast<void *>(counts));
    return 0;
}
