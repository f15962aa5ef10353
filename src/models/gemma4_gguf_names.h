// Shared by the GGUF reader and writer of Gemma 4 files.
#pragma once

#include <string>
#include <utility>

namespace specula {

// "blk.12.attn_q.weight" -> {12, "attn_q.weight"}; {-1, ""} when `name` has no `head`N. prefix.
std::pair<int, std::string> SplitLayerName(const std::string& name, const std::string& head);

}  // namespace specula
