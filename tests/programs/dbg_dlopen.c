/* Loads a library after it started (tests/test_gdb.py): prints "ready PID",
 * then for each line on stdin dlopens argv[1], calls its plugin_work() and
 * dlcloses it.  A debugger attached before the first line must find the
 * library, and find it again once it is loaded anew. */
#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    char line[256];
    if (argc != 2) {
        fprintf(stderr, "usage: dbg_dlopen LIBRARY\n");
        return 2;
    }
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    while (fgets(line, sizeof line, stdin) != NULL) {
        void *lib = dlopen(argv[1], RTLD_NOW);
        if (lib == NULL) {
            fprintf(stderr, "dlopen: %s\n", dlerror());
            return 1;
        }
        int (*work)(int) = (int (*)(int))dlsym(lib, "plugin_work");
        if (work == NULL) {
            fprintf(stderr, "dlsym: %s\n", dlerror());
            return 1;
        }
        printf("work %d\n", work(7));
        fflush(stdout);
        dlclose(lib);
    }
    return 0;
}
