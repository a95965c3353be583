/* The library dbg_dlopen.c loads with dlopen (built with -shared -fPIC). */
int plugin_counter = 100;

__attribute__((noinline)) int plugin_work(int n)
{
    plugin_counter += n;
    return plugin_counter * 2;
}
