"""Measurement prototypes: throwaway code that answers one design question with a
number (docs/performance.md says which).  Not servers: no limits, no faults, loopback
only."""
