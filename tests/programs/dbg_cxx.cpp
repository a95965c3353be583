// A C++ program to debug (tests/test_gdb.py): waits for lines on stdin in a
// member function; prints "ready PID" first.
#include <iostream>
#include <string>
#include <unistd.h>

long dbg_cxx_total = 31337;

namespace demo {
class Waiter {
public:
    explicit Waiter(std::string name) : name_(std::move(name)) {}
    void wait_for_lines()
    {
        std::string line;
        while (std::getline(std::cin, line)) {
            dbg_cxx_total += static_cast<long>(line.size());
            std::cout << name_ << " " << dbg_cxx_total << std::endl;
        }
    }

private:
    std::string name_;
};
}  // namespace demo

int main()
{
    demo::Waiter waiter("total");
    std::cout << "ready " << getpid() << std::endl;
    waiter.wait_for_lines();
    return 0;
}
