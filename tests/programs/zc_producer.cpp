// Zero-copy producer: builds a heap std::string and a
// std::unordered_map<std::string, int> (see zc_common.h), prints where they
// are:
//   string_addr=0x...  (the std::string object)
//   string_data=0x...  (its heap buffer, s.data())
//   string_len=1000
//   map_addr=0x...     (the unordered_map object)
// then "waiting" (flushed) and blocks on stdin until a line or EOF.  Then it
// describes both objects as zc::describe does (a consumer may have written
// into the string meanwhile) and prints "producer done".
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>

#include "zc_common.h"

int main()
{
    std::string text = zc::make_string();
    std::unordered_map<std::string, int> map = zc::make_map();

    std::printf("string_addr=0x%lx\n", static_cast<unsigned long>(reinterpret_cast<std::uintptr_t>(&text)));
    std::printf("string_data=0x%lx\n", static_cast<unsigned long>(reinterpret_cast<std::uintptr_t>(text.data())));
    std::printf("string_len=%zu\n", text.size());
    std::printf("map_addr=0x%lx\n", static_cast<unsigned long>(reinterpret_cast<std::uintptr_t>(&map)));
    std::printf("waiting\n");
    std::fflush(stdout);

    std::string line;
    std::getline(std::cin, line);

    zc::describe(text, map);
    std::printf("producer done\n");
    return 0;
}
