#include "datasets/coco_json.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <unordered_set>

#include "core/file_io.h"

namespace qeval {
namespace {

using json = nlohmann::json;

// "[json.exception.parse_error.101] parse error at line 3, column 1: syntax
// error ..." -> "JSON parse error at byte 57 (line 3, column 1): syntax error ...".
std::string parse_error_message(const json::parse_error& e) {
  std::string what = e.what();
  std::string where;
  const std::string kAt = "parse error at ";
  auto p = what.find(kAt);
  if (p != std::string::npos) {
    what = what.substr(p + kAt.size());
    const auto colon = what.find(": ");
    if (colon != std::string::npos) {
      where = " (" + what.substr(0, colon) + ")";
      what = what.substr(colon + 2);
    }
  } else if ((p = what.find("] ")) != std::string::npos) {
    what = what.substr(p + 2);
  }
  return fmt::format("JSON parse error at byte {}{}: {}", e.byte, where, what);
}

Result<json> parse_json_file(const std::string& path) {
  auto text = read_file(path);
  if (!text.is_ok()) return text.status();
  try {
    return json::parse(*text);
  } catch (const json::parse_error& e) {
    return data_loss("{}: {}", path, parse_error_message(e));
  } catch (const json::exception& e) {
    return data_loss("{}: JSON error: {}", path, e.what());
  }
}

const char* type_name(const json& v) { return v.type_name(); }

// An integer field. Python compares 42.0 == 42, so an integral float is accepted.
Result<int64_t> get_int(const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end()) return invalid_argument("{}.{}: missing", where, key);
  const json& v = *it;
  if (v.is_number_integer() && !v.is_number_unsigned()) return v.get<int64_t>();
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return invalid_argument("{}.{}: {} does not fit in a 64-bit integer", where, key, u);
    }
    return static_cast<int64_t>(u);
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.2e18) {
      return static_cast<int64_t>(d);
    }
    return invalid_argument("{}.{}: expected an integer, got {}", where, key, v.dump());
  }
  return invalid_argument("{}.{}: expected an integer, got {}", where, key, type_name(v));
}

Result<double> get_number(const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end()) return invalid_argument("{}.{}: missing", where, key);
  if (!it->is_number()) {
    return invalid_argument("{}.{}: expected a number, got {}", where, key, type_name(*it));
  }
  return it->get<double>();
}

Result<std::array<double, 4>> get_bbox(const json& obj, const std::string& where) {
  auto it = obj.find("bbox");
  if (it == obj.end()) return invalid_argument("{}.bbox: missing", where);
  const json& v = *it;
  if (!v.is_array() || v.size() != 4) {
    return invalid_argument("{}.bbox: expected 4 numbers [x, y, w, h], got {}", where,
                            v.is_array() ? fmt::format("{} elements", v.size()) : type_name(v));
  }
  std::array<double, 4> b{};
  for (size_t i = 0; i < 4; ++i) {
    if (!v[i].is_number()) {
      return invalid_argument("{}.bbox[{}]: expected a number, got {}", where, i, type_name(v[i]));
    }
    b[i] = v[i].get<double>();
  }
  return b;
}

Result<std::string> get_string_or_empty(const json& obj, const char* key,
                                        const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::string();
  if (!it->is_string()) {
    return invalid_argument("{}.{}: expected a string, got {}", where, key, type_name(*it));
  }
  return it->get<std::string>();
}

Result<int64_t> get_int_or_zero(const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return int64_t{0};
  return get_int(obj, key, where);
}

// iscrowd: 0/1 or false/true; pycocotools treats any truthy value as a crowd.
Result<bool> get_iscrowd(const json& obj, const std::string& where) {
  auto it = obj.find("iscrowd");
  if (it == obj.end() || it->is_null()) return false;
  if (it->is_boolean()) return it->get<bool>();
  if (it->is_number()) return it->get<double>() != 0;
  return invalid_argument("{}.iscrowd: expected 0 or 1, got {}", where, type_name(*it));
}

const json* get_array(const json& root, const char* key, Status* err) {
  auto it = root.find(key);
  if (it == root.end()) {
    *err = invalid_argument(
        "{}: missing (a ground-truth file needs images, annotations and "
        "categories)",
        key);
    return nullptr;
  }
  if (!it->is_array()) {
    *err = invalid_argument("{}: expected an array, got {}", key, type_name(*it));
    return nullptr;
  }
  return &*it;
}

Status parse_instances(const json& root, CocoDataset* d) {
  if (!root.is_object()) {
    return invalid_argument(
        "expected a JSON object with images, annotations and categories, got {}", type_name(root));
  }
  Status err;
  const json* images = get_array(root, "images", &err);
  if (!images) return err;
  const json* anns = get_array(root, "annotations", &err);
  if (!anns) return err;
  const json* cats = get_array(root, "categories", &err);
  if (!cats) return err;

  d->images.reserve(images->size());
  for (size_t i = 0; i < images->size(); ++i) {
    const json& o = (*images)[i];
    const std::string where = fmt::format("images[{}]", i);
    if (!o.is_object())
      return invalid_argument("{}: expected an object, got {}", where, type_name(o));
    CocoImage im;
    QEVAL_ASSIGN_OR_RETURN(im.id, get_int(o, "id", where));
    auto name = get_string_or_empty(o, "file_name", where);
    if (!name.is_ok()) return name.status();
    im.file_name = *name;
    QEVAL_ASSIGN_OR_RETURN(im.width, get_int_or_zero(o, "width", where));
    QEVAL_ASSIGN_OR_RETURN(im.height, get_int_or_zero(o, "height", where));
    d->images.push_back(std::move(im));
  }

  d->annotations.reserve(anns->size());
  std::unordered_map<int64_t, size_t> first_with_id;
  first_with_id.reserve(anns->size());
  for (size_t i = 0; i < anns->size(); ++i) {
    const json& o = (*anns)[i];
    const std::string where = fmt::format("annotations[{}]", i);
    if (!o.is_object())
      return invalid_argument("{}: expected an object, got {}", where, type_name(o));
    CocoAnnotation a;
    QEVAL_ASSIGN_OR_RETURN(a.id, get_int(o, "id", where));
    QEVAL_ASSIGN_OR_RETURN(a.image_id, get_int(o, "image_id", where));
    QEVAL_ASSIGN_OR_RETURN(a.category_id, get_int(o, "category_id", where));
    QEVAL_ASSIGN_OR_RETURN(a.bbox, get_bbox(o, where));
    QEVAL_ASSIGN_OR_RETURN(a.area, get_number(o, "area", where));
    QEVAL_ASSIGN_OR_RETURN(a.iscrowd, get_iscrowd(o, where));
    auto [it, inserted] = first_with_id.emplace(a.id, i);
    if (!inserted) {
      return invalid_argument(
          "{}.id: {} is also the id of annotations[{}]; annotation ids must be "
          "unique",
          where, a.id, it->second);
    }
    d->annotations.push_back(a);
  }

  d->categories.reserve(cats->size());
  for (size_t i = 0; i < cats->size(); ++i) {
    const json& o = (*cats)[i];
    const std::string where = fmt::format("categories[{}]", i);
    if (!o.is_object())
      return invalid_argument("{}: expected an object, got {}", where, type_name(o));
    CocoCategory c;
    QEVAL_ASSIGN_OR_RETURN(c.id, get_int(o, "id", where));
    auto name = get_string_or_empty(o, "name", where);
    if (!name.is_ok()) return name.status();
    c.name = *name;
    d->categories.push_back(std::move(c));
  }
  return Status::ok();
}

Status parse_results(const json& root, std::vector<CocoDetection>* dets) {
  if (!root.is_array()) {
    return invalid_argument("expected a JSON array of detections, got {}", type_name(root));
  }
  dets->reserve(root.size());
  for (size_t i = 0; i < root.size(); ++i) {
    const json& o = root[i];
    const std::string where = fmt::format("[{}]", i);
    if (!o.is_object())
      return invalid_argument("{}: expected an object, got {}", where, type_name(o));
    CocoDetection det;
    QEVAL_ASSIGN_OR_RETURN(det.image_id, get_int(o, "image_id", where));
    QEVAL_ASSIGN_OR_RETURN(det.category_id, get_int(o, "category_id", where));
    QEVAL_ASSIGN_OR_RETURN(det.bbox, get_bbox(o, where));
    QEVAL_ASSIGN_OR_RETURN(det.score, get_number(o, "score", where));
    dets->push_back(det);
  }
  return Status::ok();
}

json bbox_json(const std::array<double, 4>& b) { return json::array({b[0], b[1], b[2], b[3]}); }

// dump() throws on strings that are not UTF-8 (a file_name, a category name).
Status write_json(const json& root, const std::string& path) {
  std::string text;
  try {
    text = root.dump() + "\n";
  } catch (const json::exception& e) {
    return invalid_argument("{}: cannot write JSON: {}", path, e.what());
  }
  return write_file_atomic(path, text);
}

}  // namespace

Result<CocoDataset> read_coco_instances(const std::string& path) {
  auto root = parse_json_file(path);
  if (!root.is_ok()) return root.status();
  CocoDataset d;
  Status s = parse_instances(*root, &d);
  if (!s.is_ok()) return s.with_context(path);
  return d;
}

Result<std::vector<CocoDetection>> read_coco_results(const std::string& path) {
  auto root = parse_json_file(path);
  if (!root.is_ok()) return root.status();
  std::vector<CocoDetection> dets;
  Status s = parse_results(*root, &dets);
  if (!s.is_ok()) return s.with_context(path);
  return dets;
}

Status check_coco_results(const CocoDataset& gt, const std::vector<CocoDetection>& dets) {
  std::unordered_set<int64_t> ids;
  ids.reserve(gt.images.size());
  for (const CocoImage& im : gt.images) ids.insert(im.id);
  for (size_t i = 0; i < dets.size(); ++i) {
    if (!ids.count(dets[i].image_id)) {
      return invalid_argument("[{}].image_id: {} is not an image of the ground truth", i,
                              dets[i].image_id);
    }
  }
  return Status::ok();
}

Status write_coco_instances(const CocoDataset& d, const std::string& path) {
  json images = json::array(), anns = json::array(), cats = json::array();
  for (const CocoImage& im : d.images) {
    images.push_back(
        {{"id", im.id}, {"file_name", im.file_name}, {"width", im.width}, {"height", im.height}});
  }
  for (const CocoAnnotation& a : d.annotations) {
    anns.push_back({{"id", a.id},
                    {"image_id", a.image_id},
                    {"category_id", a.category_id},
                    {"bbox", bbox_json(a.bbox)},
                    {"area", a.area},
                    {"iscrowd", a.iscrowd ? 1 : 0}});
  }
  for (const CocoCategory& c : d.categories) cats.push_back({{"id", c.id}, {"name", c.name}});
  json root = {{"images", std::move(images)},
               {"annotations", std::move(anns)},
               {"categories", std::move(cats)}};
  return write_json(root, path);
}

Status write_coco_results(const std::vector<CocoDetection>& dets, const std::string& path) {
  json root = json::array();
  for (const CocoDetection& det : dets) {
    root.push_back({{"image_id", det.image_id},
                    {"category_id", det.category_id},
                    {"bbox", bbox_json(det.bbox)},
                    {"score", det.score}});
  }
  return write_json(root, path);
}

}  // namespace qeval
