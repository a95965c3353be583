/* exec_env PROGRAM ARGS...: execs PROGRAM with an environment no dict can
 * hold: a name given twice (first "first", then "second") besides PATH, in
 * that order.  Natively the program gets exactly these strings (getenv finds
 * the first); a launcher started this way must pass the same on. */
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    char *envp[] = {"DUP=first", "PATH=/usr/bin:/bin", "DUP=second", NULL};
    if (argc < 2) {
        fprintf(stderr, "usage: exec_env PROGRAM ARGS...\n");
        return 2;
    }
    execve(argv[1], argv + 1, envp);
    perror("execve");
    return 127;
}
