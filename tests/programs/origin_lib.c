/* Built as lib/liborigin.so (soname liborigin.so) next to origin_main. */
int origin_value(void)
{
    return 4242;
}
