// Zero-copy consumer: reads a producer's objects through raw pointers.
//
// usage: zc_consumer STRING_ADDR MAP_ADDR [--write]
//        zc_consumer --selftest [--write]
// STRING_ADDR is the std::string object's address, MAP_ADDR the
// unordered_map's (hex, as zc_producer prints them).  Prints the same lines
// as zc::describe (string_len, string_sum, string_head, map_size,
// map_entries, map_lookup_beta).  With --write it then overwrites the first
// 16 bytes of the string's buffer with "WRITTEN-BY-CONSU" (same length, so
// the string object itself is untouched) and prints "wrote=1".
// --selftest builds its own objects and reads them back through the same
// address round trip, so the program can be checked outside the space.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "zc_common.h"

using Map = std::unordered_map<std::string, int>;

static void *parse_address(const char *text)
{
    char *end = nullptr;
    unsigned long value = std::strtoul(text, &end, 16);
    if ((end == text) || (*end != '\0') || (value == 0)) {
        std::fprintf(stderr, "bad address: %s\n", text);
        std::exit(2);
    }
    return reinterpret_cast<void *>(value);
}

static void consume(const char *string_addr, const char *map_addr, bool write)
{
    auto *text = static_cast<std::string *>(parse_address(string_addr));
    const auto *map = static_cast<const Map *>(parse_address(map_addr));

    zc::describe(*text, *map);
    if (write) {
        static const char mark[] = "WRITTEN-BY-CONSU";
        std::memcpy(&(*text)[0], mark, sizeof mark - 1);
        std::printf("wrote=1\n");
        std::fflush(stdout);
    }
}

int main(int argc, char **argv)
{
    if ((argc >= 2) && (std::strcmp(argv[1], "--selftest") == 0)) {
        std::string text = zc::make_string();
        Map map = zc::make_map();
        char string_addr[32], map_addr[32];
        std::snprintf(string_addr, sizeof string_addr, "%lx", reinterpret_cast<unsigned long>(&text));
        std::snprintf(map_addr, sizeof map_addr, "0x%lx", reinterpret_cast<unsigned long>(&map));
        consume(string_addr, map_addr, (argc >= 3) && (std::strcmp(argv[2], "--write") == 0));
        std::printf("after_head=%s\n", text.substr(0, 16).c_str());
        return 0;
    }
    if ((argc != 3) && !((argc == 4) && (std::strcmp(argv[3], "--write") == 0))) {
        std::fprintf(stderr, "usage: %s STRING_ADDR MAP_ADDR [--write] | --selftest [--write]\n", argv[0]);
        return 2;
    }
    consume(argv[1], argv[2], argc == 4);
    return 0;
}
