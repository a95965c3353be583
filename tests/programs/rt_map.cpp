// A sameprocess::unordered_map<sameprocess::string, long> handed between programs.
//
//   rt_map build NAME N    create the map in the shared heap with keys
//                          "key0".."key{N-1}" -> i*i, publish it, exit:
//                          built=N addr=0x..
//   rt_map use NAME        look it up, check every value, change it (erase
//                          the even keys, add "extra" -> -1, append to a
//                          sameprocess::vector), check again: checked=N
//                          size=M vector=K
//   rt_map destroy NAME    destroy it and unpublish: destroyed=1
//   rt_map traits -        what the allocator is: empty=1 polymorphic=0 ...
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

#include "sameprocess.hpp"

namespace sp = sameprocess;

struct Shared {
    sp::unordered_map<sp::string, long> map;
    sp::vector<long> log;
    sp::string label;
};

static void say(const char *format, long a, long b = 0, long c = 0)
{
    std::printf(format, a, b, c);
    std::printf("\n");
    std::fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    const char *verb = argv[1], *name = argv[2];
    try {
        if (std::strcmp(verb, "traits") == 0) {
            using A = sp::allocator<long>;
            std::printf("empty=%d polymorphic=%d always_equal=%d trivially_copyable=%d\n",
                        std::is_empty_v<A>, std::is_polymorphic_v<A>,
                        std::allocator_traits<A>::is_always_equal::value, std::is_trivially_copyable_v<A>);
            return 0;
        }
        if (std::strcmp(verb, "build") == 0) {
            long n = std::strtol(argv[3], nullptr, 0);
            Shared *shared = sp::create<Shared>();
            for (long i = 0; i < n; i++)
                shared->map.emplace(sp::string("key") + std::to_string(i).c_str(), i * i);
            shared->label = "a label long enough to leave the small-string buffer";
            sp::publish(name, shared);
            std::printf("built=%ld addr=%p\n", n, static_cast<void *>(shared));
            return 0;
        }
        Shared *shared = sp::lookup<Shared>(name);
        if (shared == nullptr) {
            std::printf("missing=1\n");
            return 1;
        }
        if (std::strcmp(verb, "use") == 0) {
            long n = static_cast<long>(shared->map.size()), bad = 0;
            for (long i = 0; i < n; i++) {
                auto it = shared->map.find(sp::string("key") + std::to_string(i).c_str());
                bad += (it == shared->map.end()) || (it->second != i * i);
            }
            if (bad != 0 || shared->label != "a label long enough to leave the small-string buffer") {
                say("bad=%ld", bad);
                return 1;
            }
            for (long i = 0; i < n; i += 2)
                shared->map.erase(sp::string("key") + std::to_string(i).c_str());
            shared->map[sp::string("extra")] = -1;
            for (long i = 0; i < 1000; i++)
                shared->log.push_back(i);
            say("checked=%ld size=%ld vector=%ld", n, static_cast<long>(shared->map.size()),
                static_cast<long>(shared->log.size()));
            return 0;
        }
        if (std::strcmp(verb, "destroy") == 0) {
            sp::destroy(shared);
            say("destroyed=%ld", sp_unpublish(name) == 0);
            return 0;
        }
    } catch (const std::exception &e) {
        std::printf("exception=%s\n", e.what());
        return 1;
    }
    return 2;
}
