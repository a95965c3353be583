// The demo's consumer.
//
//   consumer STRING_ADDR MAP_ADDR   reads a producer's std::string and
//                                   std::unordered_map in place, by pointer
//                                   (hex addresses as the producer prints them),
//                                   and prints their summary and
//                                   "handoff_ns=N": the time from having the
//                                   addresses to having read every byte/entry.
//   consumer --pipe                 reads what `producer --pipe` writes on stdin,
//                                   rebuilds the objects, prints the same summary
//                                   and "handoff_ns=N": from the moment the
//                                   producer started sending to the same point.
#include <cstdlib>
#include <cstring>
#include <string>
#include <unistd.h>

#include "demo_common.h"

static void read_all(void *data, std::size_t size)
{
    char *p = static_cast<char *>(data);
    while (size > 0) {
        ssize_t n = read(0, p, size);
        if (n <= 0) {
            std::fprintf(stderr, "consumer: short read from the pipe\n");
            std::exit(1);
        }
        p += n;
        size -= static_cast<std::size_t>(n);
    }
}

static void *parse_address(const char *text)
{
    char *end = nullptr;
    unsigned long value = std::strtoul(text, &end, 16);
    if ((end == text) || (*end != '\0') || (value == 0)) {
        std::fprintf(stderr, "consumer: bad address %s\n", text);
        std::exit(2);
    }
    return reinterpret_cast<void *>(value);
}

int main(int argc, char **argv)
{
    if ((argc == 2) && (std::strcmp(argv[1], "--pipe") == 0)) {
        std::uint64_t start, length, entries;
        read_all(&start, sizeof start);
        read_all(&length, sizeof length);
        read_all(&entries, sizeof entries);
        std::string text(length, '\0');
        read_all(&text[0], length);
        demo::Map map;
        map.reserve(entries);
        for (std::uint64_t i = 0; i < entries; i++) {
            std::uint32_t key_length;
            std::int64_t value;
            read_all(&key_length, sizeof key_length);
            std::string key(key_length, '\0');
            read_all(&key[0], key_length);
            read_all(&value, sizeof value);
            map.emplace(std::move(key), value);
        }
        demo::Summary summary = demo::summarize(text, map);
        std::uint64_t elapsed = demo::now_ns() - start;
        demo::print_summary("consumer", text, map, summary);
        std::printf("handoff_ns=%llu\n", static_cast<unsigned long long>(elapsed));
        return 0;
    }
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s STRING_ADDR MAP_ADDR | --pipe\n", argv[0]);
        return 2;
    }
    std::uint64_t start = demo::now_ns();
    const auto &text = *static_cast<const std::string *>(parse_address(argv[1]));
    const auto &map = *static_cast<const demo::Map *>(parse_address(argv[2]));
    demo::Summary summary = demo::summarize(text, map);
    std::uint64_t elapsed = demo::now_ns() - start;
    demo::print_summary("consumer", text, map, summary);
    std::printf("handoff_ns=%llu\n", static_cast<unsigned long long>(elapsed));
    return 0;
}
