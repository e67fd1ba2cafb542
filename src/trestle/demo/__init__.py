"""The sample repository and the recorded trajectory ``trestle demo`` replays."""
