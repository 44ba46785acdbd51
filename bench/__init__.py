"""callfork benchmarks (`python -m bench`): the relay under N simulated mod_audio_fork streams, and
stream start latency. Not tests: see BENCHMARKS.md for the method and the figures."""
