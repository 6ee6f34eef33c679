//! Where posts are: place bounding boxes and great-circle distances. Coordinates are WGS 84
//! degrees in X's GeoJSON order, longitude first.

use std::sync::Arc;

use deltalake::arrow::array::builder::NullBufferBuilder;
use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Float64Array, Float64Builder, ListArray, StructArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Fields, Float64Type};
use deltalake::datafusion::common::Result;
use deltalake::datafusion::logical_expr::ScalarUDF;

use super::udf::{number_lists, numbers, udf, Arg};

/// The mean Earth radius (IUGG), in km.
const EARTH_RADIUS_KM: f64 = 6371.0088;

/// `bbox_centroid(bbox) -> Struct{lon: Float64, lat: Float64}`: the centre of a place's bounding
/// box `[west, south, east, north]`, as in X's `place.geo.bbox`.
///
/// The midpoint of the latitudes and of the longitudes, in degrees; a box that crosses the
/// antimeridian (west > east) is centred across it. One struct rather than two functions, so a
/// model reads both fields from one call. NULL for a NULL box, or one that is not 4 numbers with
/// longitudes in [-180, 180] and -90 <= south <= north <= 90.
///
/// ```sql
/// SELECT bbox_centroid(p['geo']['bbox'])['lon'] AS lon, bbox_centroid(p['geo']['bbox'])['lat'] AS lat
/// FROM places;
/// SELECT bbox_centroid([-74.026675, 40.683935, -73.910408, 40.877483]);
/// -- {lon: -73.9685415, lat: 40.780709}
/// ```
pub(super) fn bbox_centroid() -> ScalarUDF {
    udf(
        "bbox_centroid",
        &[Arg::NumberList],
        DataType::Struct(centroid_fields()),
        Arc::new(|args| centroids(number_lists(&args[0])?)),
    )
}

/// `point_in_bbox(lon, lat, bbox) -> Boolean`: whether the point lies in the bounding box
/// `[west, south, east, north]`, edges included; a box across the antimeridian works.
///
/// NULL if any argument is NULL, the point is not a valid coordinate or the box is invalid (see
/// `bbox_centroid`).
///
/// ```sql
/// SELECT point_in_bbox(-73.99596, 40.74118, [-74.026675, 40.683935, -73.910408, 40.877483]);  -- true
/// ```
pub(super) fn point_in_bbox() -> ScalarUDF {
    udf(
        "point_in_bbox",
        &[Arg::Number, Arg::Number, Arg::NumberList],
        DataType::Boolean,
        Arc::new(|args| {
            let (lons, lats, boxes) = (numbers(&args[0])?, numbers(&args[1])?, number_lists(&args[2])?);
            let mut builder = BooleanBuilder::with_capacity(boxes.len());
            for row in 0..boxes.len() {
                let point = point(lons, lats, row);
                let inside = point
                    .zip(bbox(boxes, row))
                    .map(|((lon, lat), bbox)| bbox.contains(lon, lat));
                builder.append_option(inside);
            }
            Ok(Arc::new(builder.finish()))
        }),
    )
}

/// `haversine_km(lon1, lat1, lon2, lat2) -> Float64`: the great-circle distance between two
/// points, in km, on a sphere of the mean Earth radius (6371.0088 km; within 0.5% of the
/// ellipsoid).
///
/// NULL if any argument is NULL or a point is not a valid coordinate (longitude in [-180, 180],
/// latitude in [-90, 90]).
///
/// ```sql
/// SELECT haversine_km(-73.99596, 40.74118, -0.1278, 51.5074);  -- 5567.59...
/// ```
pub(super) fn haversine_km() -> ScalarUDF {
    udf(
        "haversine_km",
        &[Arg::Number, Arg::Number, Arg::Number, Arg::Number],
        DataType::Float64,
        Arc::new(|args| {
            let [lon1, lat1, lon2, lat2] = [&args[0], &args[1], &args[2], &args[3]].map(numbers);
            let (lon1, lat1, lon2, lat2) = (lon1?, lat1?, lon2?, lat2?);
            let mut builder = Float64Builder::with_capacity(lon1.len());
            for row in 0..lon1.len() {
                let from = point(lon1, lat1, row);
                let to = point(lon2, lat2, row);
                builder.append_option(from.zip(to).map(|(from, to)| haversine(from, to)));
            }
            Ok(Arc::new(builder.finish()))
        }),
    )
}

fn centroid_fields() -> Fields {
    Fields::from(vec![
        Field::new("lon", DataType::Float64, true),
        Field::new("lat", DataType::Float64, true),
    ])
}

fn centroids(boxes: &ListArray) -> Result<ArrayRef> {
    let mut lons = Float64Builder::with_capacity(boxes.len());
    let mut lats = Float64Builder::with_capacity(boxes.len());
    let mut valid = NullBufferBuilder::new(boxes.len());
    for row in 0..boxes.len() {
        let centre = bbox(boxes, row).map(|bbox| bbox.centroid());
        lons.append_option(centre.map(|(lon, _)| lon));
        lats.append_option(centre.map(|(_, lat)| lat));
        valid.append(centre.is_some());
    }
    let columns: Vec<ArrayRef> = vec![Arc::new(lons.finish()), Arc::new(lats.finish())];
    Ok(Arc::new(StructArray::try_new(
        centroid_fields(),
        columns,
        valid.finish(),
    )?))
}

/// A bounding box in degrees; `west > east` when it crosses the antimeridian.
#[derive(Debug, Clone, Copy, PartialEq)]
struct BBox {
    west: f64,
    south: f64,
    east: f64,
    north: f64,
}

impl BBox {
    fn centroid(self) -> (f64, f64) {
        let lat = (self.south + self.north) / 2.0;
        if self.west <= self.east {
            return ((self.west + self.east) / 2.0, lat);
        }
        let lon = (self.west + self.east + 360.0) / 2.0;
        (if lon > 180.0 { lon - 360.0 } else { lon }, lat)
    }

    fn contains(self, lon: f64, lat: f64) -> bool {
        let within_lon = if self.west <= self.east {
            self.west <= lon && lon <= self.east
        } else {
            lon >= self.west || lon <= self.east
        };
        within_lon && self.south <= lat && lat <= self.north
    }
}

/// The valid box at `row`, if any.
fn bbox(boxes: &ListArray, row: usize) -> Option<BBox> {
    if boxes.is_null(row) {
        return None;
    }
    let offsets = boxes.value_offsets();
    let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
    let values = boxes.values().as_primitive_opt::<Float64Type>()?;
    if end - start != 4 || (start..end).any(|i| values.is_null(i)) {
        return None;
    }
    let [west, south, east, north] = [0, 1, 2, 3].map(|k| values.value(start + k));
    let valid = valid_lon(west) && valid_lon(east) && -90.0 <= south && south <= north && north <= 90.0;
    valid.then_some(BBox {
        west,
        south,
        east,
        north,
    })
}

/// The valid point `(lon, lat)` at `row`, if any.
fn point(lons: &Float64Array, lats: &Float64Array, row: usize) -> Option<(f64, f64)> {
    if lons.is_null(row) || lats.is_null(row) {
        return None;
    }
    let (lon, lat) = (lons.value(row), lats.value(row));
    (valid_lon(lon) && (-90.0..=90.0).contains(&lat)).then_some((lon, lat))
}

fn valid_lon(lon: f64) -> bool {
    (-180.0..=180.0).contains(&lon)
}

fn haversine((lon1, lat1): (f64, f64), (lon2, lat2): (f64, f64)) -> f64 {
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let half_dphi = (phi2 - phi1) / 2.0;
    let half_dlambda = (lon2 - lon1).to_radians() / 2.0;
    let a = half_dphi.sin().powi(2) + phi1.cos() * phi2.cos() * half_dlambda.sin().powi(2);
    // Rounding can push `a` a hair past 1 for antipodes.
    2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::ListBuilder;

    const MANHATTAN: BBox = BBox {
        west: -74.026675,
        south: 40.683935,
        east: -73.910408,
        north: 40.877483,
    };

    fn boxes(rows: &[Option<&[Option<f64>]>]) -> ListArray {
        let mut builder = ListBuilder::new(Float64Builder::new());
        for row in rows {
            match row {
                Some(values) => {
                    builder.values().extend(values.iter().copied());
                    builder.append(true);
                }
                None => builder.append(false),
            }
        }
        builder.finish()
    }

    #[test]
    fn centroid_is_the_midpoint() {
        let (lon, lat) = MANHATTAN.centroid();
        assert!((lon - -73.9685415).abs() < 1e-9 && (lat - 40.780709).abs() < 1e-9);
    }

    #[test]
    fn antimeridian_boxes_wrap() {
        let fiji = BBox {
            west: 177.0,
            south: -19.0,
            east: -179.0,
            north: -16.0,
        };
        assert_eq!(fiji.centroid(), (179.0, -17.5));
        let east_side = BBox {
            west: 170.0,
            east: -170.0,
            ..fiji
        };
        assert_eq!(east_side.centroid().0, 180.0);
        let west_side = BBox {
            west: 178.0,
            east: -170.0,
            ..fiji
        };
        assert_eq!(west_side.centroid().0, -176.0);
        assert!(fiji.contains(178.5, -18.0) && fiji.contains(-179.5, -18.0) && !fiji.contains(0.0, -18.0));
    }

    #[test]
    fn invalid_boxes_are_none() {
        let good: &[Option<f64>] = &[Some(-1.0), Some(-2.0), Some(1.0), Some(2.0)];
        let list = boxes(&[
            Some(good),
            None,
            Some(&[]),
            Some(&[Some(1.0), Some(2.0), Some(3.0)]),
            Some(&[Some(-1.0), None, Some(1.0), Some(2.0)]),
            Some(&[Some(-1.0), Some(3.0), Some(1.0), Some(2.0)]),
            Some(&[Some(-1.0), Some(-2.0), Some(1.0), Some(91.0)]),
            Some(&[Some(f64::NAN), Some(-2.0), Some(1.0), Some(2.0)]),
            Some(&[Some(-181.0), Some(-2.0), Some(1.0), Some(2.0)]),
            Some(&[Some(-1.0), Some(-2.0), Some(1.0), Some(2.0), Some(3.0)]),
        ]);
        let valid: Vec<bool> = (0..list.len()).map(|row| bbox(&list, row).is_some()).collect();
        assert_eq!(
            valid,
            [true, false, false, false, false, false, false, false, false, false]
        );
    }

    #[test]
    fn edges_are_inside() {
        assert!(MANHATTAN.contains(MANHATTAN.west, MANHATTAN.north));
        assert!(!MANHATTAN.contains(-73.9, 40.7) && !MANHATTAN.contains(-74.0, 40.9));
    }

    #[test]
    fn haversine_matches_known_distances() {
        let new_york = (-73.99596, 40.74118);
        let london = (-0.1278, 51.5074);
        // The WGS 84 geodesic is 5582.6 km: the sphere is within 0.3%.
        assert!((haversine(new_york, london) - 5567.594).abs() < 1e-3);
        assert_eq!(haversine(london, london), 0.0);
        let half_circumference = std::f64::consts::PI * EARTH_RADIUS_KM;
        assert!((haversine((0.0, 0.0), (180.0, 0.0)) - half_circumference).abs() < 1e-6);
        assert!((haversine((0.0, 90.0), (0.0, -90.0)) - half_circumference).abs() < 1e-6);
        assert!((haversine((179.5, 0.0), (-179.5, 0.0)) - 111.195).abs() < 0.01);
    }
}
