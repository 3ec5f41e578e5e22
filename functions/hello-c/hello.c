/*
 * hello in C: the seed handler, {"message":"Hello World!"}, as a WASI 0.1 command that
 * answers the WAGI way (CGI over WASI): the request arrives as CGI variables, the
 * response goes to stdout as headers, a blank line and the body.
 *
 * It is here to show that a module from another toolchain runs in the runtime as the
 * Rust builds do. Build it with Debian's clang, lld and wasi-libc:
 *
 *     apt-get install -y clang lld wasi-libc libclang-rt-14-dev-wasm32
 *     clang --target=wasm32-wasi -O2 -o hello-c.wasm functions/hello-c/hello.c
 *
 * (with a wasi-sdk instead, add --sysroot=<wasi-sdk>/share/wasi-sysroot).
 */
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    if (getenv("REQUEST_METHOD") == NULL) {
        fputs("REQUEST_METHOD is not set: this is a CGI program, run by a CGI or WAGI host\n",
              stderr);
        return 2;
    }
    fputs("Status: 200 OK\n"
          "Content-Type: application/json\n"
          "\n"
          "{\"message\":\"Hello World!\"}",
          stdout);
    return fflush(stdout) == 0 ? 0 : 1;
}
