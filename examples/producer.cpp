// The demo's producer.
//
//   producer LENGTH ENTRIES          builds a std::string of LENGTH bytes and a
//                                    std::unordered_map of ENTRIES entries, prints
//                                    "objects string=0x... map=0x..." and its own
//                                    summary, then keeps them alive until a line
//                                    (or EOF) arrives on stdin.
//   producer --pipe LENGTH ENTRIES   builds the same objects and writes them to
//                                    stdout instead: the monotonic time when it
//                                    starts sending, then the string, then each
//                                    entry (key length, key, value).
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <unistd.h>

#include "demo_common.h"

static void write_all(const void *data, std::size_t size)
{
    const char *p = static_cast<const char *>(data);
    while (size > 0) {
        ssize_t n = write(1, p, size);
        if (n < 0) {
            std::perror("producer: write");
            std::exit(1);
        }
        p += n;
        size -= static_cast<std::size_t>(n);
    }
}

static void send_through_pipe(const std::string &s, const demo::Map &m)
{
    std::string out;
    out.reserve(s.size() + m.size() * 48 + 32);
    auto put = [&out](const void *data, std::size_t size) { out.append(static_cast<const char *>(data), size); };
    std::uint64_t start = demo::now_ns();
    std::uint64_t length = s.size(), entries = m.size();
    put(&start, sizeof start);
    put(&length, sizeof length);
    put(&entries, sizeof entries);
    put(s.data(), s.size());
    for (const auto &entry : m) {
        std::uint32_t key_length = static_cast<std::uint32_t>(entry.first.size());
        put(&key_length, sizeof key_length);
        put(entry.first.data(), key_length);
        put(&entry.second, sizeof entry.second);
    }
    write_all(out.data(), out.size());
}

int main(int argc, char **argv)
{
    bool pipe_mode = (argc == 4) && (std::strcmp(argv[1], "--pipe") == 0);
    if ((argc != 3) && !pipe_mode) {
        std::fprintf(stderr, "usage: %s [--pipe] LENGTH ENTRIES\n", argv[0]);
        return 2;
    }
    std::size_t length = std::strtoul(argv[argc - 2], nullptr, 10);
    std::size_t entries = std::strtoul(argv[argc - 1], nullptr, 10);
    std::string text = demo::make_string(length);
    demo::Map map = demo::make_map(entries);

    if (pipe_mode) {
        send_through_pipe(text, map);
        return 0;
    }
    std::printf("objects string=%p map=%p\n", static_cast<void *>(&text), static_cast<void *>(&map));
    demo::print_summary("producer", text, map, demo::summarize(text, map));
    std::fflush(stdout);
    std::string line;
    std::getline(std::cin, line);  // keep the objects alive until told
    return 0;
}
