/* mcu.h: the bare-metal services of startup.c. */
#ifndef TINYOPT_MCU_H
#define TINYOPT_MCU_H
#include <stdint.h>
int semihost(int op, void *arg);
void semihost_exit(int ok);
void ticks_init(void);
uint64_t ticks(void);
#endif
