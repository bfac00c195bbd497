/*
 * main.c -- the `stead` program: dispatches to `serve` or a client command.
 */
#include "server/serve.h"
#include "stead.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
      strcmp(argv[1], "help") == 0) {
    fputs(stead__cli_usage(), argc < 2 ? stderr : stdout);
    return argc < 2 ? 1 : 0;
  }
  if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
    printf("stead %s\n", STEAD_VERSION_STRING);
    return 0;
  }
  if (strcmp(argv[1], "serve") == 0)
    return stead__serve_main(argc - 2, argv + 2);
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
    fprintf(stderr, "stead: cannot initialise libcurl\n");
    return 1;
  }
  int x = stead__cli_main(argc - 1, argv + 1);
  curl_global_cleanup();
  return x;
}
