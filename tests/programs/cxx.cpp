// C++ runtime check: iostream, std::unordered_map, a thrown and caught
// exception (needs the unwinder and .eh_frame lookup to work), a static
// object with a constructor and destructor.  Prints:
//   cxx iostream ok
//   map_size=3
//   map_sum=60
//   caught=boom 42
//   static_ctor=1
// and "static_dtor=1" on exit (from a destructor, so after main returns).
#include <iostream>
#include <stdexcept>
#include <string>
#include <unordered_map>

namespace {

struct Witness {
    int constructed = 1;
    ~Witness() { std::cout << "static_dtor=1" << std::endl; }
};

Witness witness;

[[noreturn]] void thrower(int value)
{
    throw std::runtime_error("boom " + std::to_string(value));
}

}  // namespace

int main()
{
    std::cout << "cxx iostream ok" << std::endl;

    std::unordered_map<std::string, int> map{{"ten", 10}, {"twenty", 20}, {"thirty", 30}};
    int sum = 0;
    for (const auto &entry : map)
        sum += entry.second;
    std::cout << "map_size=" << map.size() << "\n" << "map_sum=" << sum << std::endl;

    try {
        thrower(42);
    } catch (const std::exception &e) {
        std::cout << "caught=" << e.what() << std::endl;
    }
    std::cout << "static_ctor=" << witness.constructed << std::endl;
    return 0;
}
