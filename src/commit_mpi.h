/* SPDX-License-Identifier: MIT */
/* The MPI vote engine (commit_mpi.c), private. */
#ifndef CKPT_COMMIT_MPI_H
#define CKPT_COMMIT_MPI_H

/* Tests only (tests/mpi_vote_race.c): when set, called at named points of the engine to widen a
 * race window ("vote.posted": a vote has just entered the outbox). The library never sets it. */
extern void (*ckpt_mpi__test_hook)(const char *point);

#endif
